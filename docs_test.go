package twofactor

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// configTypes are the structs whose exported fields are Caddy's JSON
// documentation of the plugin.
var configTypes = []any{
	App{}, Handler{}, Rule{}, NetworkPolicy{}, WebAuthn{}, Identity{}, AdminEntry{},
	EmbeddedStore{}, RedisStore{}, SMTPSender{}, SNSSender{}, MailboxSender{},
}

// sentenceBreak ends a sentence inside a doc comment.
var sentenceBreak = regexp.MustCompile(`[.:]\s+[A-Z"]`)

// endsWithDefault reports whether doc's last sentence gives the default
// ("Default: 30s.") or says the field is required ("Required.", "Required
// for source endpoint.").
func endsWithDefault(doc string) bool {
	doc = strings.Join(strings.Fields(doc), " ")
	if !strings.HasSuffix(doc, ".") {
		return false
	}
	i := max(strings.LastIndex(doc, "Default: "), strings.LastIndex(doc, "Required"))
	return i >= 0 && (i == 0 || doc[i-1] == ' ') &&
		!sentenceBreak.MatchString(doc[i+len("Default: "):])
}

// Every exported config field has a doc comment of its own that ends with
// its default or says it is required.
func TestConfigFieldDocs(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	structs := map[string]*ast.StructType{}
	for _, pkg := range pkgs {
		for _, f := range pkg.Files {
			ast.Inspect(f, func(n ast.Node) bool {
				if ts, ok := n.(*ast.TypeSpec); ok {
					if st, ok := ts.Type.(*ast.StructType); ok {
						structs[ts.Name.Name] = st
					}
				}
				return true
			})
		}
	}
	checked := 0
	for _, v := range configTypes {
		name := reflect.TypeOf(v).Name()
		st := structs[name]
		if st == nil {
			t.Fatalf("struct %s not found", name)
		}
		for _, field := range st.Fields.List {
			if len(field.Names) == 0 {
				continue // embedded, not configuration
			}
			for _, n := range field.Names {
				if !n.IsExported() {
					continue
				}
				if len(field.Names) > 1 {
					t.Errorf("%s.%s shares its doc comment with %d other fields", name, n.Name, len(field.Names)-1)
				}
				if field.Tag == nil || !strings.Contains(field.Tag.Value, `json:"`) || strings.Contains(field.Tag.Value, `json:"-"`) {
					continue
				}
				checked++
				doc := strings.TrimSpace(field.Doc.Text())
				switch {
				case doc == "":
					t.Errorf("%s.%s has no doc comment", name, n.Name)
				case !endsWithDefault(doc):
					t.Errorf("%s.%s: doc does not end with \"Default: X.\" or \"Required.\": %q", name, n.Name, doc[max(0, len(doc)-60):])
				}
			}
		}
	}
	if checked < 60 {
		t.Fatalf("only %d fields checked", checked)
	}
}
