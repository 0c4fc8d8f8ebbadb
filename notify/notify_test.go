package notify

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestClass(t *testing.T) {
	inner := errors.New("boom")
	err := &Error{Class: ClassThrottled, Err: inner}
	if got, want := err.Error(), "notify: throttled: boom"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, inner) {
		t.Error("Error does not unwrap to its cause")
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{err, ClassThrottled},
		{fmt.Errorf("sending: %w", err), ClassThrottled},
		{errors.New("plain"), ClassOther},
		{context.DeadlineExceeded, ClassOther},
	} {
		if got := Class(tc.err); got != tc.want {
			t.Errorf("Class(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
