package notify

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/smithy-go"
)

// SNSConfig configures an SMS sender using Amazon SNS. Zero fields take the
// defaults given.
type SNSConfig struct {
	Region string // required
	// Static credentials; ID and secret go together. Without them the AWS
	// default chain applies (see NewSNS).
	AccessKeyID, SecretAccessKey, SessionToken string
	// Alphanumeric sender ID, in countries that support one: 1 to 11
	// letters and digits, at least one a letter.
	SenderID string
	// Number to send from, in E.164, where the account has one.
	OriginationNumber string
	// Absolute http(s) URL to use instead of the region's SNS endpoint, for
	// SNS-compatible gateways and tests.
	Endpoint string
	// Bounds each Send, retries included. Default 10s.
	Timeout time.Duration
	// Attempts per Send, the first included. Default 2: a member is
	// waiting for the code, so one quick retry is worth it, more is not.
	MaxAttempts int
}

// SNS sends SMS through Amazon SNS's Publish, as transactional messages.
type SNS struct {
	client            *sns.Client
	senderID          string
	originationNumber string
	timeout           time.Duration
}

var (
	regionPattern      = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	senderIDPattern    = regexp.MustCompile(`^[A-Za-z0-9]{1,11}$`)
	originationPattern = regexp.MustCompile(`^\+[1-9][0-9]{7,14}$`)
	// Recipients may be shorter than an origination number: some small
	// countries have numbers of seven digits, country code included.
	recipientPattern = regexp.MustCompile(`^\+[1-9][0-9]{5,14}$`)
)

// NewSNS validates cfg and loads the AWS configuration. Without static
// credentials it uses the SDK's default chain, in this order: the
// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY environment variables, a web
// identity token (AWS_WEB_IDENTITY_TOKEN_FILE), the profile from the shared
// config and credentials files (static keys, SSO, credential_process,
// role assumption), the ECS/EKS container endpoint, and last the EC2
// instance metadata service (IMDS), which AWS_EC2_METADATA_DISABLED=true
// turns off. Credentials are fetched on the first Send, not here, so a
// missing role shows up as an "auth" delivery error.
func NewSNS(ctx context.Context, cfg SNSConfig) (*SNS, error) {
	return newSNS(ctx, cfg, nil)
}

// snsThrottled is the code SNS gives throttling; the SDK's retryer only
// knows ThrottledException.
var snsThrottled = map[string]struct{}{"Throttled": {}}

// newSNS is NewSNS with the retry backoff replaceable (nil: the SDK's
// jittered exponential backoff), so that tests need not wait.
func newSNS(ctx context.Context, cfg SNSConfig, backoff retry.BackoffDelayer) (*SNS, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &SNS{senderID: cfg.SenderID, originationNumber: cfg.OriginationNumber, timeout: cfg.Timeout}
	if s.timeout == 0 {
		s.timeout = 10 * time.Second
	}
	attempts := cfg.MaxAttempts
	if attempts == 0 {
		attempts = 2
	}
	opts := []func(*config.LoadOptions) error{config.WithRegion(cfg.Region)}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("sns: loading the AWS configuration: %w", err)
	}
	if awsCfg.Credentials == nil {
		return nil, errors.New("sns: no AWS credentials provider")
	}
	awsCfg.Credentials = markedCredentials{awsCfg.Credentials}
	s.client = sns.NewFromConfig(awsCfg, func(o *sns.Options) {
		// Retries are set here, over AWS_MAX_ATTEMPTS, AWS_RETRY_MODE and
		// the shared config: a member is waiting for the code.
		o.RetryMaxAttempts = attempts
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = attempts
			so.Retryables = append(so.Retryables, retry.RetryableErrorCode{Codes: snsThrottled})
			so.Throttles = append(so.Throttles, retry.ThrottleErrorCode{Codes: snsThrottled})
			if backoff != nil {
				so.Backoff = backoff
			}
		})
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	return s, nil
}

func (c SNSConfig) validate() error {
	switch {
	case c.Region == "":
		return errors.New("sns region: required")
	case !regionPattern.MatchString(c.Region):
		return fmt.Errorf("sns region %q: not a region name such as ap-northeast-1", c.Region)
	case c.AccessKeyID == "" && c.SecretAccessKey != "":
		return errors.New("sns access_key_id: required with secret_access_key")
	case c.AccessKeyID != "" && c.SecretAccessKey == "":
		return errors.New("sns secret_access_key: required with access_key_id")
	case c.SessionToken != "" && c.AccessKeyID == "":
		return errors.New("sns session_token: requires access_key_id and secret_access_key")
	case c.SenderID != "" && (!senderIDPattern.MatchString(c.SenderID) || !strings.ContainsFunc(c.SenderID, isASCIILetter)):
		return fmt.Errorf("sns sender_id %q: must be 1 to 11 letters and digits, at least one a letter", c.SenderID)
	case c.OriginationNumber != "" && !originationPattern.MatchString(c.OriginationNumber):
		return fmt.Errorf("sns origination_number %q: must be in E.164 form, such as +815012345678", c.OriginationNumber)
	case c.Timeout < 0:
		return fmt.Errorf("sns timeout %s: must be positive", c.Timeout)
	case c.MaxAttempts < 0 || c.MaxAttempts > 10:
		return fmt.Errorf("sns max_attempts %d: must be between 1 and 10", c.MaxAttempts)
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("sns endpoint %q: must be an absolute http or https URL", c.Endpoint)
		}
	}
	return nil
}

func isASCIILetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

// Send publishes m.Text to the number m.To.
func (s *SNS) Send(ctx context.Context, m Message) error {
	if !recipientPattern.MatchString(m.To) {
		return classed(ClassInvalid, errors.New("sns: recipient is not an E.164 phone number"))
	}
	if m.Text == "" {
		return classed(ClassInvalid, errors.New("sns: empty message"))
	}
	attrs := map[string]types.MessageAttributeValue{
		// Transactional messages are routed for reliability, not cost.
		"AWS.SNS.SMS.SMSType": stringAttribute("Transactional"),
	}
	if s.senderID != "" {
		attrs["AWS.SNS.SMS.SenderID"] = stringAttribute(s.senderID)
	}
	if s.originationNumber != "" {
		attrs["AWS.MM.SMS.OriginationNumber"] = stringAttribute(s.originationNumber)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.client.Publish(ctx, &sns.PublishInput{
		PhoneNumber:       aws.String(m.To),
		Message:           aws.String(m.Text),
		MessageAttributes: attrs,
	})
	if err != nil {
		return classed(classifySNS(ctx, err), fmt.Errorf("sns: %w", err))
	}
	return nil
}

func stringAttribute(v string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

// markedCredentials marks failures to obtain credentials, which the SDK
// reports as text only.
type markedCredentials struct{ aws.CredentialsProvider }

func (m markedCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := m.CredentialsProvider.Retrieve(ctx)
	if err != nil {
		return c, &credentialsFailure{err}
	}
	return c, nil
}

type credentialsFailure struct{ err error }

func (e *credentialsFailure) Error() string { return "credentials: " + e.err.Error() }
func (e *credentialsFailure) Unwrap() error { return e.err }

func classifySNS(ctx context.Context, err error) string {
	var (
		apiErr  smithy.APIError
		credErr *credentialsFailure
		signErr *v4.SigningError
	)
	switch {
	case errors.As(err, &apiErr):
		return snsCodeClass(apiErr.ErrorCode(), apiErr.ErrorMessage())
	case errors.As(err, &credErr), errors.As(err, &signErr):
		return ClassAuth
	case errors.Is(err, context.DeadlineExceeded), errors.Is(ctx.Err(), context.DeadlineExceeded):
		return ClassTimeout
	case ctx.Err() != nil:
		return ClassOther
	}
	return netClass(err)
}

var snsAuthCodes = map[string]bool{
	"AuthorizationError":          true,
	"InvalidClientTokenId":        true,
	"SignatureDoesNotMatch":       true,
	"ExpiredToken":                true,
	"ExpiredTokenException":       true,
	"UnrecognizedClientException": true,
	"AccessDenied":                true,
	"AccessDeniedException":       true,
	"InvalidSecurity":             true,
	"IncompleteSignature":         true,
	"MissingAuthenticationToken":  true,
	"InvalidAccessKeyId":          true,
	"RequestExpired":              true,
}

var snsInvalidCodes = map[string]bool{
	"InvalidParameter":      true,
	"InvalidParameterValue": true,
	"ParameterValueInvalid": true, // the code SNS's InvalidParameterValueException carries
	"ValidationException":   true,
}

func snsCodeClass(code, msg string) string {
	lower := strings.ToLower(msg)
	optedOut := strings.Contains(lower, "opted out") || strings.Contains(lower, "opted-out") ||
		strings.Contains(lower, "optedout")
	_, throttle := retry.DefaultThrottleErrorCodes[code]
	switch {
	case strings.Contains(code, "OptedOut"), snsInvalidCodes[code] && optedOut:
		return ClassOptedOut
	case throttle, strings.Contains(strings.ToLower(code), "throttl"):
		return ClassThrottled
	case snsInvalidCodes[code]:
		return ClassInvalid
	case snsAuthCodes[code]:
		return ClassAuth
	}
	return ClassOther
}

var _ Sender = (*SNS)(nil)
