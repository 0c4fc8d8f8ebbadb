package pages

import "golang.org/x/text/language"

// matcher picks among the supported languages; English, first, is the
// fallback.
var matcher = language.NewMatcher([]language.Tag{language.English, language.Japanese})

var matchedLang = []string{"en", "ja"}

// maxAcceptLanguage bounds the header parsed; real browsers send far less.
const maxAcceptLanguage = 1024

// Language picks "ja" or "en" from an Accept-Language header value. It
// returns "en" when the header is empty, malformed or matches neither.
func Language(acceptLanguage string) string {
	if acceptLanguage == "" || len(acceptLanguage) > maxAcceptLanguage {
		return "en"
	}
	tags, _, err := language.ParseAcceptLanguage(acceptLanguage)
	if err != nil || len(tags) == 0 {
		return "en"
	}
	_, i, conf := matcher.Match(tags...)
	if conf == language.No || i < 0 || i >= len(matchedLang) {
		return "en"
	}
	return matchedLang[i]
}
