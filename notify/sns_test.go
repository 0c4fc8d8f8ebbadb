package notify

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"

	"github.com/caddy-twofactor/twofactor/internal/testcode"
	"github.com/caddy-twofactor/twofactor/internal/testsns"
)

// isolateAWS keeps the machine's AWS settings out of a test: no shared
// config or credentials files, no credentials in the environment, and no
// instance metadata service.
func isolateAWS(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, k := range []string{
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SNS",
		"AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "AWS_CA_BUNDLE",
	} {
		t.Setenv(k, "")
	}
}

// noBackoff retries at once, so that retry tests do not wait.
var noBackoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })

func snsSender(t *testing.T, srv *testsns.Server, edit func(*SNSConfig)) *SNS {
	t.Helper()
	cfg := SNSConfig{
		Region:          "ap-northeast-1",
		AccessKeyID:     "AKIDNOTIFYTEST",
		SecretAccessKey: "notify-test-secret",
		Endpoint:        srv.URL(),
		Timeout:         5 * time.Second,
		MaxAttempts:     1,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := newSNS(context.Background(), cfg, noBackoff)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func codeSMS(t *testing.T, to string) Message {
	t.Helper()
	m, err := CodeSMS("ja", CodeData{Site: "Example", Code: "482913", TTL: 5 * time.Minute, Purpose: "verify"})
	if err != nil {
		t.Fatal(err)
	}
	m.To = to
	return m
}

func TestSNSPublish(t *testing.T) {
	isolateAWS(t)
	srv := testsns.Start(t)
	s := snsSender(t, srv, func(c *SNSConfig) {
		c.SenderID = "Example"
		c.OriginationNumber = "+815012345678"
	})
	m := codeSMS(t, "+819012345678")
	if err := s.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	p := srv.Wait(t, 1, 5*time.Second)[0]
	if p.PhoneNumber != "+819012345678" || p.Message != m.Text || testcode.Find(t, p.Message) != "482913" {
		t.Errorf("published %q to %q", p.Message, p.PhoneNumber)
	}
	if !p.Signed || p.AccessKeyID != "AKIDNOTIFYTEST" {
		t.Errorf("request signed=%v with key %q", p.Signed, p.AccessKeyID)
	}
	want := map[string]string{
		"AWS.SNS.SMS.SMSType":          "Transactional",
		"AWS.SNS.SMS.SenderID":         "Example",
		"AWS.MM.SMS.OriginationNumber": "+815012345678",
	}
	if len(p.Attributes) != len(want) {
		t.Errorf("attributes = %v, want %v", p.Attributes, want)
	}
	for k, v := range want {
		if p.Attributes[k] != v || p.DataTypes[k] != "String" {
			t.Errorf("attribute %s = %q (%s), want %q (String)", k, p.Attributes[k], p.DataTypes[k], v)
		}
	}
}

func TestSNSPublishMinimal(t *testing.T) {
	isolateAWS(t)
	srv := testsns.Start(t)
	s := snsSender(t, srv, nil)
	if err := s.Send(context.Background(), codeSMS(t, "+12025550123")); err != nil {
		t.Fatal(err)
	}
	p := srv.Wait(t, 1, 5*time.Second)[0]
	if len(p.Attributes) != 1 || p.Attributes["AWS.SNS.SMS.SMSType"] != "Transactional" {
		t.Errorf("attributes = %v, want only the SMS type", p.Attributes)
	}
}

func TestSNSErrorClasses(t *testing.T) {
	isolateAWS(t)
	for _, tc := range []struct {
		code    string
		status  int
		message string
		class   string
	}{
		{"Throttling", 400, "Rate exceeded", ClassThrottled},
		{"Throttled", 400, "Too many requests", ClassThrottled},
		{"InvalidParameter", 400, "Invalid parameter: PhoneNumber Reason: +819012345678 is not valid", ClassInvalid},
		{"ParameterValueInvalid", 400, "Invalid value", ClassInvalid},
		{"InvalidParameter", 400, "Invalid parameter: PhoneNumber Reason: the number has opted out of receiving SMS", ClassOptedOut},
		{"OptedOut", 400, "Phone number opted out", ClassOptedOut},
		{"InvalidClientTokenId", 403, "The security token included in the request is invalid.", ClassAuth},
		{"SignatureDoesNotMatch", 403, "The request signature we calculated does not match", ClassAuth},
		{"AuthorizationError", 403, "User is not authorized to perform: SNS:Publish", ClassAuth},
		{"ExpiredToken", 403, "The security token included in the request is expired", ClassAuth},
		{"InternalError", 500, "Internal failure", ClassOther},
	} {
		t.Run(tc.code, func(t *testing.T) {
			srv := testsns.Start(t)
			srv.FailMessage(tc.code, tc.status, tc.message)
			err := snsSender(t, srv, nil).Send(context.Background(), codeSMS(t, "+819012345678"))
			if Class(err) != tc.class {
				t.Fatalf("Send: %v (class %q), want class %q", err, Class(err), tc.class)
			}
			t.Logf("error: %v", err)
			if strings.Contains(err.Error(), "482913") {
				t.Errorf("error text contains the code: %v", err)
			}
			if n := len(srv.Publishes()); n != 0 {
				t.Errorf("%d publish(es) recorded", n)
			}
		})
	}
}

func TestSNSRetries(t *testing.T) {
	isolateAWS(t)
	t.Setenv("AWS_MAX_ATTEMPTS", "5") // the configured attempts win
	for _, code := range []string{"Throttling", "Throttled"} {
		srv := testsns.Start(t)
		srv.Fail(code, 400)
		s := snsSender(t, srv, func(c *SNSConfig) { c.MaxAttempts = 0 }) // default: 2
		if err := s.Send(context.Background(), codeSMS(t, "+819012345678")); Class(err) != ClassThrottled {
			t.Fatalf("%s: Send: %v, want class %s", code, err, ClassThrottled)
		}
		if n := srv.Requests(); n != 2 {
			t.Errorf("%s: %d requests, want 2 attempts", code, n)
		}
	}
	// Client errors are not retried.
	srv := testsns.Start(t)
	srv.Fail("InvalidParameter", 400)
	s := snsSender(t, srv, func(c *SNSConfig) { c.MaxAttempts = 3 })
	if err := s.Send(context.Background(), codeSMS(t, "+819012345678")); Class(err) != ClassInvalid {
		t.Fatalf("Send: %v, want class %s", err, ClassInvalid)
	}
	if n := srv.Requests(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestSNSTimeout(t *testing.T) {
	isolateAWS(t)
	srv := testsns.Start(t)
	srv.SetDelay(time.Minute)
	s := snsSender(t, srv, func(c *SNSConfig) { c.Timeout = 300 * time.Millisecond; c.MaxAttempts = 2 })
	start := time.Now()
	err := s.Send(context.Background(), codeSMS(t, "+819012345678"))
	if Class(err) != ClassTimeout {
		t.Fatalf("Send: %v, want class %s", err, ClassTimeout)
	}
	t.Logf("error: %v", err)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Send took %s with a 300ms timeout", d)
	}
}

func TestSNSConnectionRefused(t *testing.T) {
	isolateAWS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	s, err := newSNS(context.Background(), SNSConfig{
		Region: "ap-northeast-1", AccessKeyID: "AKIDNOTIFYTEST", SecretAccessKey: "secret", Endpoint: url,
	}, noBackoff)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(context.Background(), codeSMS(t, "+819012345678"))
	if Class(err) != ClassRefused {
		t.Fatalf("Send: %v, want class %s", err, ClassRefused)
	}
	t.Logf("error: %v", err)
}

func TestSNSDefaultChainFromEnvironment(t *testing.T) {
	isolateAWS(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
	srv := testsns.Start(t)
	s, err := NewSNS(context.Background(), SNSConfig{Region: "us-east-1", Endpoint: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), codeSMS(t, "+819012345678")); err != nil {
		t.Fatal(err)
	}
	if p := srv.Wait(t, 1, 5*time.Second)[0]; !p.Signed || p.AccessKeyID != "AKIDFROMENV" {
		t.Errorf("request signed=%v with key %q, want the environment's", p.Signed, p.AccessKeyID)
	}
}

func TestSNSNoCredentials(t *testing.T) {
	isolateAWS(t) // and so no metadata service either
	srv := testsns.Start(t)
	s, err := NewSNS(context.Background(), SNSConfig{Region: "us-east-1", Endpoint: srv.URL(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(context.Background(), codeSMS(t, "+819012345678"))
	if Class(err) != ClassAuth {
		t.Fatalf("Send: %v, want class %s", err, ClassAuth)
	}
	t.Logf("error: %v", err)
	if n := srv.Requests(); n != 0 {
		t.Errorf("%d unsigned request(s) sent", n)
	}
}

func TestSNSInvalidRecipient(t *testing.T) {
	isolateAWS(t)
	srv := testsns.Start(t)
	s := snsSender(t, srv, nil)
	for _, to := range []string{"", "09012345678", "+81 90 1234 5678", "alice@example.com", "+0123456789"} {
		if err := s.Send(context.Background(), codeSMS(t, to)); Class(err) != ClassInvalid {
			t.Errorf("Send to %q: %v, want class %s", to, err, ClassInvalid)
		}
	}
	if err := s.Send(context.Background(), Message{To: "+819012345678"}); Class(err) != ClassInvalid {
		t.Errorf("Send of an empty message: %v, want class %s", err, ClassInvalid)
	}
	if n := srv.Requests(); n != 0 {
		t.Errorf("%d request(s) sent", n)
	}
}

func TestNewSNSValidates(t *testing.T) {
	isolateAWS(t)
	ok := SNSConfig{Region: "ap-northeast-1"}
	for _, tc := range []struct {
		edit func(*SNSConfig)
		want string
	}{
		{func(c *SNSConfig) { c.Region = "" }, "sns region: required"},
		{func(c *SNSConfig) { c.Region = "Tokyo" }, `sns region "Tokyo"`},
		{func(c *SNSConfig) { c.SecretAccessKey = "secret" }, "sns access_key_id: required"},
		{func(c *SNSConfig) { c.AccessKeyID = "AKID" }, "sns secret_access_key: required"},
		{func(c *SNSConfig) { c.SessionToken = "token" }, "sns session_token"},
		{func(c *SNSConfig) { c.SenderID = "TooLongSender" }, `sns sender_id "TooLongSender"`},
		{func(c *SNSConfig) { c.SenderID = "12345" }, `sns sender_id "12345"`},
		{func(c *SNSConfig) { c.SenderID = "My Club" }, `sns sender_id "My Club"`},
		{func(c *SNSConfig) { c.SenderID = "クラブ" }, "sns sender_id"},
		{func(c *SNSConfig) { c.OriginationNumber = "0312345678" }, `sns origination_number "0312345678"`},
		{func(c *SNSConfig) { c.OriginationNumber = "+1234567" }, "sns origination_number"},
		{func(c *SNSConfig) { c.OriginationNumber = "+1234567890123456" }, "sns origination_number"},
		{func(c *SNSConfig) { c.Endpoint = "localhost:4566" }, "sns endpoint"},
		{func(c *SNSConfig) { c.Endpoint = "ftp://example.com" }, "sns endpoint"},
		{func(c *SNSConfig) { c.Timeout = -time.Second }, "sns timeout"},
		{func(c *SNSConfig) { c.MaxAttempts = -1 }, "sns max_attempts"},
	} {
		cfg := ok
		tc.edit(&cfg)
		_, err := NewSNS(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewSNS(%+v) = %v, want an error containing %q", cfg, err, tc.want)
		}
	}
	for _, cfg := range []SNSConfig{
		ok,
		{Region: "us-gov-west-1", AccessKeyID: "AKID", SecretAccessKey: "secret", SessionToken: "token"},
		{Region: "eu-west-2", SenderID: "Example1", OriginationNumber: "+447400123456", Endpoint: "https://sns.example.com/"},
		{Region: "ap-northeast-1", SenderID: "A"},
	} {
		if _, err := NewSNS(context.Background(), cfg); err != nil {
			t.Errorf("NewSNS(%+v): %v", cfg, err)
		}
	}
}
