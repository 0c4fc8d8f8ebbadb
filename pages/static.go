package pages

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"net/http"
	"time"
)

//go:embed static/style.css static/countdown.js static/recovery.js static/localtime.js static/webauthn.js
var embeddedStatic embed.FS

type staticFile struct {
	contentType string
	etag        string
	body        []byte
}

// staticFiles are the files ServeStatic serves, by exact name: nothing
// else below the static path exists.
var staticFiles = mustLoadStatic(map[string]string{
	"style.css":    "text/css; charset=utf-8",
	"countdown.js": "text/javascript; charset=utf-8",
	"recovery.js":  "text/javascript; charset=utf-8",
	"localtime.js": "text/javascript; charset=utf-8",
	"webauthn.js":  "text/javascript; charset=utf-8",
})

// countdownIntegrity, recoveryIntegrity, localtimeIntegrity and
// webauthnIntegrity are the Subresource Integrity
// values of the embedded scripts. The CSP allows scripts by these hashes
// only, not every script of the origin: the gateway shares its origin with
// the member site, whose own scripts have no business running on the
// gateway's pages.
var (
	countdownIntegrity = integrity("countdown.js")
	recoveryIntegrity  = integrity("recovery.js")
	localtimeIntegrity = integrity("localtime.js")
	webauthnIntegrity  = integrity("webauthn.js")
)

func integrity(name string) string {
	sum := sha256.Sum256(staticFiles[name].body)
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

func mustLoadStatic(types map[string]string) map[string]staticFile {
	files := make(map[string]staticFile, len(types))
	for name, ct := range types {
		b, err := embeddedStatic.ReadFile("static/" + name)
		if err != nil {
			panic("pages: embedded static file: " + err.Error())
		}
		sum := sha256.Sum256(b)
		files[name] = staticFile{
			contentType: ct,
			etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
			body:        b,
		}
	}
	return files
}

// ServeStatic serves the embedded static file name (the path below
// Prefix+"static/"). Unknown names are 404. Responses may be cached for an
// hour and carry an ETag for revalidation.
func ServeStatic(w http.ResponseWriter, r *http.Request, name string) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	f, ok := staticFiles[name]
	if !ok {
		h.Set("Cache-Control", "no-store")
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	h.Set("Content-Type", f.contentType)
	h.Set("Cache-Control", "public, max-age=3600")
	h.Set("ETag", f.etag)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.body))
}
