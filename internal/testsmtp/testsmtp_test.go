package testsmtp

import (
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	crlf := func(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }
	for _, tc := range []struct {
		name                string
		data                []byte
		subject, text, html string
	}{
		{"plain", crlf("Subject: Hello\n\nline one\nline two\n"), "Hello", "line one\nline two\n", ""},
		{"base64", crlf("Subject: =?UTF-8?B?56K66KqN44Kz44O844OJ?=\nContent-Type: text/plain; charset=utf-8\n" +
			"Content-Transfer-Encoding: base64\n\n5pel5pys6KqeCg==\n"), "確認コード", "日本語\n", ""},
		{"multipart", crlf("Subject: =?UTF-8?q?=E7=A2=BA=E8=AA=8D?=\n =?UTF-8?q?=E3=82=B3=E3=83=BC=E3=83=89?=\n" +
			"MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=b\n\n" +
			"--b\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: quoted-printable\n\n" +
			"=E6=97=A5=E6=9C=AC=\n=E8=AA=9E 482913\n" +
			"--b\nContent-Type: text/html; charset=UTF-8\nContent-Transfer-Encoding: quoted-printable\n\n" +
			"<p style=3D\"x\">482913</p>\n--b--\n"), "確認コード", "日本語 482913", "<p style=\"x\">482913</p>"},
	} {
		subject, text, html := decode(tc.data)
		if subject != tc.subject || text != tc.text || html != tc.html {
			t.Errorf("%s: decode = %q, %q, %q; want %q, %q, %q", tc.name, subject, text, html, tc.subject, tc.text, tc.html)
		}
	}
}
