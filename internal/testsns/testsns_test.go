package testsns

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/internal/testcode"
)

func post(t *testing.T, s *Server, form url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL()+"/", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/sns/aws4_request, SignedHeaders=host, Signature=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestPublishForm(t *testing.T) {
	s := Start(t)
	status, body := post(t, s, url.Values{
		"Action":                         {"Publish"},
		"Version":                        {"2010-03-31"},
		"PhoneNumber":                    {"+819012345678"},
		"Message":                        {"482913 is your code"},
		"MessageAttributes.entry.1.Name": {"AWS.SNS.SMS.SMSType"},
		"MessageAttributes.entry.1.Value.DataType":    {"String"},
		"MessageAttributes.entry.1.Value.StringValue": {"Transactional"},
	})
	if status != 200 || !strings.Contains(body, "<MessageId>") {
		t.Fatalf("status %d, body %s", status, body)
	}
	p := s.Wait(t, 1, time.Second)[0]
	if p.PhoneNumber != "+819012345678" || testcode.Find(t, p.Message) != "482913" || !p.Signed || p.AccessKeyID != "AKIDTEST" ||
		p.Attributes["AWS.SNS.SMS.SMSType"] != "Transactional" || p.DataTypes["AWS.SNS.SMS.SMSType"] != "String" {
		t.Errorf("recorded %+v", p)
	}
}

func TestFail(t *testing.T) {
	s := Start(t)
	s.FailMessage("InvalidParameter", 400, "opted out & gone")
	status, body := post(t, s, url.Values{"Action": {"Publish"}, "PhoneNumber": {"+819012345678"}, "Message": {"x"}})
	if status != 400 || !strings.Contains(body, "<Code>InvalidParameter</Code>") || !strings.Contains(body, "opted out &amp; gone") {
		t.Errorf("status %d, body %s", status, body)
	}
	s.Fail("", 0)
	if status, _ := post(t, s, url.Values{"Action": {"Publish"}, "PhoneNumber": {"+819012345678"}, "Message": {"x"}}); status != 200 {
		t.Errorf("after clearing: status %d", status)
	}
	if n, p := s.Requests(), len(s.Publishes()); n != 2 || p != 1 {
		t.Errorf("requests %d, publishes %d; want 2, 1", n, p)
	}
}
