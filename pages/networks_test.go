package pages

import (
	"strings"
	"testing"
)

// The known ranges show on the settings and admin member pages, with
// "none" while ranges are recorded and nothing is known yet, and not at
// all where no rule rechecks.
func TestNetworksSection(t *testing.T) {
	r := newRenderer(t, "")
	for _, lang := range []string{"en", "ja"} {
		heading := (&Page{Lang: lang}).T("networks_heading")
		none := (&Page{Lang: lang}).T("networks_none")
		intro := (&Page{Lang: lang}).T("networks_intro")
		for _, name := range []string{"methods", "admin_member"} {
			p := fullPage(lang)
			body := render(t, r, name, p, true).Body.String()
			if !strings.Contains(body, heading) || !strings.Contains(body, "<code>192.0.2.0/24</code>") ||
				!strings.Contains(body, "<code>2001:db8:10::/48</code>") || strings.Contains(body, none) {
				t.Errorf("%s %s with ranges:\n%s", lang, name, body)
			}
			if got := strings.Contains(body, intro); got != (name == "methods") {
				t.Errorf("%s %s: intro shown %v", lang, name, got)
			}
			p.Networks, p.Admin.Member.Networks = nil, nil
			if body := render(t, r, name, p, true).Body.String(); !strings.Contains(body, heading) || !strings.Contains(body, none) {
				t.Errorf("%s %s with none known: no %q", lang, name, none)
			}
			p.RecordsNetworks = false
			if body := render(t, r, name, p, true).Body.String(); strings.Contains(body, heading) {
				t.Errorf("%s %s where nothing is recorded shows the section", lang, name)
			}
		}
	}
}
