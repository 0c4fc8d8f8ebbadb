package audit

import (
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Tee returns logger that also queues each event it logs on w as a
// record: the audit logger, whose events (fields event, result, user, ip,
// user_agent, method, actor, admin_ip and others) become the trail's
// records without a second set of calls. now is the gateway's clock,
// which queries by time use.
func Tee(logger *zap.Logger, w *Writer, now func() time.Time) *zap.Logger {
	return logger.WithOptions(zap.WrapCore(func(base zapcore.Core) zapcore.Core {
		return zapcore.NewTee(base, &core{w: w, now: now})
	}))
}

// core is a zap core that turns the events it is given into records for
// w and writes nothing.
type core struct {
	w      *Writer
	now    func() time.Time
	fields []zapcore.Field
}

func (c *core) Enabled(zapcore.Level) bool { return true }

func (c *core) With(fields []zapcore.Field) zapcore.Core {
	return &core{w: c.w, now: c.now, fields: append(append([]zapcore.Field(nil), c.fields...), fields...)}
}

func (c *core) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce.AddCore(e, c)
}

func (c *core) Write(_ zapcore.Entry, fields []zapcore.Field) error {
	c.w.Add(FromFields(c.now(), append(append([]zapcore.Field(nil), c.fields...), fields...)))
	return nil
}

func (c *core) Sync() error { return nil }

// recordFields are the event fields a record has a place for; the rest go
// to its details.
var recordFields = map[string]bool{"event": true, "result": true, "user": true, "ip": true, "admin_ip": true,
	"user_agent": true, "method": true, "actor": true}

// FromFields builds the record of an audit event from its fields. The
// browser is reduced to a summary; error texts stay out, as zap.Error
// fields or as a text named "error" (a mail server's error may quote the
// full address; error_class and reason say what failed).
func FromFields(at time.Time, fields []zapcore.Field) Record {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		if f.Type == zapcore.ErrorType || f.Key == "error" {
			continue
		}
		f.AddTo(enc)
	}
	str := func(k string) string {
		s, _ := enc.Fields[k].(string)
		return s
	}
	r := Record{Time: at.UTC(), Event: str("event"), Result: str("result"), Member: str("user"),
		Actor: str("actor"), IP: str("ip"), Browser: Browser(str("user_agent")), Method: str("method")}
	if r.IP == "" {
		r.IP = str("admin_ip") // an admin action: the admin's address
	}
	for k, v := range enc.Fields {
		if recordFields[k] {
			continue
		}
		if r.Details == nil {
			r.Details = map[string]string{}
		}
		r.Details[k] = detail(v)
	}
	return r
}

// detail is a details value as text.
func detail(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case time.Time:
		return v.UTC().Format(time.RFC3339)
	case []any:
		parts := make([]string, len(v))
		for i, p := range v {
			parts[i] = detail(p)
		}
		return strings.Join(parts, ",")
	default:
		return fmt.Sprint(v)
	}
}
