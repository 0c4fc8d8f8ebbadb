package testcode

import "testing"

func TestCode(t *testing.T) {
	for text, want := range map[string]string{
		"482913":                               "482913",
		"Your code: 482913.":                   "482913",
		"482913 は確認コードです":                      "482913",
		"order 1234567, code 482913":           "482913",
		"+819012345678 then 000123 and 999999": "000123",
	} {
		if got := Find(t, text); got != want {
			t.Errorf("Find(%q) = %q, want %q", text, got, want)
		}
	}
}
