package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Mailbox writes messages to a directory and the log instead of delivering
// them: for the demo and development only. It logs each message's text,
// code included, on purpose: it exists so that a developer can read the
// codes without a mail server or a phone.
type Mailbox struct {
	dir string
	log *zap.Logger
}

// NewMailbox returns a mailbox writing to dir, which it creates (0700)
// when the first message arrives, so that configuring one writes nothing.
// There is no default directory: codes on disk must be somewhere the
// operator chose.
func NewMailbox(dir string, log *zap.Logger) (*Mailbox, error) {
	if dir == "" {
		return nil, errors.New("mailbox dir: required")
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("mailbox dir %s: not a directory", dir)
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Mailbox{dir: dir, log: log}, nil
}

// Send writes m to a file of its own: an .eml for an email address, a .txt
// for a phone number.
func (mb *Mailbox) Send(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil {
		return classed(contextClass(err), err)
	}
	if strings.ContainsAny(m.To, "\r\n") {
		return classed(ClassInvalid, errors.New("mailbox: recipient contains a line break"))
	}
	now := time.Now().UTC()
	var body strings.Builder
	var ext string
	switch {
	case strings.Contains(m.To, "@"):
		ext = ".eml"
		subject := strings.Join(strings.Fields(m.Subject), " ")
		fmt.Fprintf(&body, "From: two_factor mailbox <mailbox@localhost>\n")
		fmt.Fprintf(&body, "To: %s\n", m.To)
		fmt.Fprintf(&body, "Subject: %s\n", mime.QEncoding.Encode("utf-8", subject))
		fmt.Fprintf(&body, "Date: %s\n", now.Format(time.RFC1123Z))
		body.WriteString("MIME-Version: 1.0\n")
		body.WriteString("Content-Type: text/plain; charset=utf-8\n")
		body.WriteString("Content-Transfer-Encoding: 8bit\n\n")
		body.WriteString(m.Text)
	case strings.HasPrefix(m.To, "+"):
		ext = ".txt"
		fmt.Fprintf(&body, "To: %s\n\n", m.To)
		body.WriteString(m.Text)
	default:
		return classed(ClassInvalid, errors.New("mailbox: recipient is neither an email address nor an E.164 number"))
	}
	if !strings.HasSuffix(body.String(), "\n") {
		body.WriteString("\n")
	}
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return classed(ClassOther, err)
	}
	name := now.Format("20060102T150405.000Z") + "-" + hex.EncodeToString(suffix[:]) + ext
	path := filepath.Join(mb.dir, name)
	if err := os.MkdirAll(mb.dir, 0o700); err != nil {
		return classed(ClassOther, fmt.Errorf("mailbox: %w", err))
	}
	if err := writeAtomic(mb.dir, path, []byte(body.String())); err != nil {
		return classed(ClassOther, fmt.Errorf("mailbox: %w", err))
	}
	mb.log.Warn("development mailbox: message not delivered",
		zap.String("to", m.To),
		zap.String("subject", m.Subject),
		zap.String("file", path),
		zap.String("text", m.Text))
	return nil
}

// writeAtomic writes through a temporary file and a rename, so that a
// reader watching the directory never sees half a message.
func writeAtomic(dir, path string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, ".incoming-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func contextClass(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return ClassTimeout
	}
	return ClassOther
}

var _ Sender = (*Mailbox)(nil)
