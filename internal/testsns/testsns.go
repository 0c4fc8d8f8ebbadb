// Package testsns runs an SNS-compatible HTTP endpoint on the loopback
// interface for tests. It speaks the protocol the AWS SDK uses for SNS
// (awsquery: a form-encoded POST answered with XML), records each Publish
// and fails on request.
package testsns

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/internal/testrecord"
)

// Publish is one Publish request the endpoint accepted.
type Publish struct {
	PhoneNumber string
	Message     string
	Attributes  map[string]string // message attribute name → StringValue
	DataTypes   map[string]string // message attribute name → DataType
	Signed      bool              // carried an AWS SigV4 Authorization header
	AccessKeyID string            // from the signature's credential scope
}

// Server is a running endpoint. It is safe for concurrent use.
type Server struct {
	srv  *httptest.Server
	done chan struct{}

	publishes testrecord.Recorder[Publish]

	mu          sync.Mutex
	requests    int
	failCode    string
	failStatus  int
	failMessage string
	delay       time.Duration
}

// Start runs an endpoint on 127.0.0.1 until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{done: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		close(s.done)
		s.srv.Close()
	})
	return s
}

// URL returns the endpoint's base URL, for the SDK's BaseEndpoint.
func (s *Server) URL() string { return s.srv.URL }

// Publishes returns the accepted Publish requests so far.
func (s *Server) Publishes() []Publish { return s.publishes.All() }

// Requests returns how many requests arrived, failed ones included.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Wait returns the Publish requests once there are at least n, failing the
// test if that takes longer than timeout.
func (s *Server) Wait(t testing.TB, n int, timeout time.Duration) []Publish {
	t.Helper()
	return s.publishes.Wait(t, n, timeout, "testsns publishes")
}

// Fail makes every following request fail with an AWS error response with
// this code and HTTP status, such as ("Throttling", 400). Fail("", 0)
// clears it.
func (s *Server) Fail(code string, status int) {
	msg := "Test failure " + code
	if code == "Throttling" {
		msg = "Rate exceeded"
	}
	s.FailMessage(code, status, msg)
}

// FailMessage is Fail with the error message given, for errors told apart
// by their message (an opted-out number is an InvalidParameter).
func (s *Server) FailMessage(code string, status int, message string) {
	s.mu.Lock()
	s.failCode, s.failStatus, s.failMessage = code, status, message
	s.mu.Unlock()
}

// SetDelay delays every following response by d.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

var credentialPattern = regexp.MustCompile(`Credential=([^/,\s]+)/`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	code, status, message, delay := s.failCode, s.failStatus, s.failMessage, s.delay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
	if code != "" {
		writeError(w, status, code, message)
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "InvalidAction", "POST required")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "MalformedQueryString", err.Error())
		return
	}
	if a := r.PostForm.Get("Action"); a != "Publish" {
		writeError(w, http.StatusBadRequest, "InvalidAction", "unsupported action "+a)
		return
	}
	p := Publish{
		PhoneNumber: r.PostForm.Get("PhoneNumber"),
		Message:     r.PostForm.Get("Message"),
		Attributes:  map[string]string{},
		DataTypes:   map[string]string{},
	}
	for i := 1; ; i++ {
		prefix := "MessageAttributes.entry." + strconv.Itoa(i) + "."
		name := r.PostForm.Get(prefix + "Name")
		if name == "" {
			break
		}
		p.Attributes[name] = r.PostForm.Get(prefix + "Value.StringValue")
		p.DataTypes[name] = r.PostForm.Get(prefix + "Value.DataType")
	}
	auth := r.Header.Get("Authorization")
	p.Signed = strings.HasPrefix(auth, "AWS4-HMAC-SHA256 ") &&
		strings.Contains(auth, "SignedHeaders=") && strings.Contains(auth, "Signature=")
	if m := credentialPattern.FindStringSubmatch(auth); m != nil {
		p.AccessKeyID = m[1]
	}
	if p.PhoneNumber == "" || p.Message == "" {
		writeError(w, http.StatusBadRequest, "InvalidParameter", "Invalid parameter: PhoneNumber or Message missing")
		return
	}
	s.publishes.Add(p)

	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <PublishResult>
    <MessageId>%s</MessageId>
  </PublishResult>
  <ResponseMetadata>
    <RequestId>%s</RequestId>
  </ResponseMetadata>
</PublishResponse>
`, randomID(), randomID())
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	if status == 0 {
		status = http.StatusBadRequest
	}
	kind := "Sender"
	if status >= 500 {
		kind = "Receiver"
	}
	var esc strings.Builder
	xml.EscapeText(&esc, []byte(message))
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <Error>
    <Type>%s</Type>
    <Code>%s</Code>
    <Message>%s</Message>
  </Error>
  <RequestId>%s</RequestId>
</ErrorResponse>
`, kind, code, esc.String(), randomID())
}

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
