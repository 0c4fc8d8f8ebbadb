package flow

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestIsNavigation(t *testing.T) {
	tests := []struct {
		method, mode string
		want         bool
	}{
		{http.MethodGet, "", true},
		{http.MethodHead, "", true},
		{http.MethodGet, "navigate", true},
		{http.MethodGet, "cors", false},
		{http.MethodGet, "same-origin", false},
		{http.MethodGet, "no-cors", false},
		{http.MethodPost, "navigate", false},
		{http.MethodPut, "", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, "/members/", nil)
		if tt.mode != "" {
			r.Header.Set("Sec-Fetch-Mode", tt.mode)
		}
		if got := IsNavigation(r); got != tt.want {
			t.Errorf("%s with Sec-Fetch-Mode %q: %v, want %v", tt.method, tt.mode, got, tt.want)
		}
	}
}
