package pages

import (
	"embed"
	"encoding/json"
	"fmt"
)

// The message catalogs, one JSON object of key → text per language. Texts
// are fmt formats when the code passes arguments for them.
//
//go:embed messages/*.json
var embeddedMessages embed.FS

// languages are the supported languages; the first is the default.
var languages = []string{"en", "ja"}

var catalogs = mustLoadCatalogs()

func mustLoadCatalogs() map[string]map[string]string {
	c, err := loadCatalogs()
	if err != nil {
		panic(err)
	}
	return c
}

func loadCatalogs() (map[string]map[string]string, error) {
	c := make(map[string]map[string]string, len(languages))
	for _, lang := range languages {
		b, err := embeddedMessages.ReadFile("messages/" + lang + ".json")
		if err != nil {
			return nil, fmt.Errorf("pages: message catalog %s: %w", lang, err)
		}
		m := make(map[string]string)
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("pages: message catalog %s: %w", lang, err)
		}
		c[lang] = m
	}
	return c, nil
}

// lookup finds key in lang's catalog, falling back to the default language.
func lookup(lang, key string) (string, bool) {
	if m, ok := catalogs[lang]; ok {
		if text, ok := m[key]; ok {
			return text, true
		}
	}
	text, ok := catalogs[languages[0]][key]
	return text, ok
}
