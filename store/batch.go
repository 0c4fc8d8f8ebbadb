package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Batcher is implemented by stores that run several operations for the
// price of one round trip: Redis sends them as one pipeline (a Cluster
// client splits it by node and sends the parts in parallel), the embedded
// store runs them in one transaction. A sign-in needs a handful of
// independent reads and writes on different keys; one round trip per
// step instead of one per key is what keeps it fast on a networked store.
type Batcher interface {
	// Batch runs ops, each exactly as the Store method of its kind would,
	// and leaves each op's result in it. Each op is atomic on its own
	// key; nothing is atomic across keys (on Redis another client's
	// command may run between two ops of a batch), but ops on the same
	// key run in the order given. A nil error means every op ran and
	// its result is set. An error (ErrUnavailable when the store could
	// not be reached) means any op may or may not have run, and no
	// result is to be trusted; an op the store refuses before sending
	// anything (a negative ttl, an unknown kind) fails the whole batch
	// with an error naming the op, and nothing runs.
	Batch(ctx context.Context, ops ...*Op) error
}

// OpKind names the Store method an Op stands for.
type OpKind uint8

const (
	// OpGet is Get: Value and Found are the result.
	OpGet OpKind = iota + 1
	// OpSet is Set of Arg with TTL.
	OpSet
	// OpDelete is Delete of Key.
	OpDelete
	// OpCompareAndSwap is CompareAndSwap of Old for Arg with TTL:
	// Swapped is the result.
	OpCompareAndSwap
	// OpIncrement is Increment with TTL: Count is the result.
	OpIncrement
	// OpPublish is Notifier.Publish of Arg on the channel Key. Only
	// stores that are Notifiers take it.
	OpPublish
)

func (k OpKind) String() string {
	switch k {
	case OpGet:
		return "get"
	case OpSet:
		return "set"
	case OpDelete:
		return "delete"
	case OpCompareAndSwap:
		return "compare-and-swap"
	case OpIncrement:
		return "increment"
	case OpPublish:
		return "publish"
	}
	return fmt.Sprintf("op kind %d", uint8(k))
}

// Op is one operation of a batch: what to do, and, once the batch has
// run without error, what came of it.
type Op struct {
	Kind OpKind
	Key  string
	// Arg is the value to set, to swap in (nil deletes) or to publish.
	Arg []byte
	// Old is the value a compare-and-swap expects; nil means absent.
	Old []byte
	TTL time.Duration

	// Value is what a Get found; it belongs to the caller.
	Value []byte
	// Found reports whether a Get found a live value.
	Found bool
	// Swapped reports whether a compare-and-swap happened.
	Swapped bool
	// Count is an Increment's new count.
	Count int64

	// Channel and Notice, set by Announce on a compare-and-swap, are
	// published (Notifier.Publish) in the swap's own atomic step, and
	// only if it swaps: a write and its notice go together or not at
	// all, whatever happens to the writer after.
	Channel string
	Notice  []byte
}

// Announce has the compare-and-swap op publish msg on channel when it
// swaps, atomically with the swap. Only stores that are Notifiers take
// it. It returns op. A store whose notices are in order (InOrder) that
// cannot publish it (a Redis user refused the channel) still swaps, and
// sets Unannounced for UnannouncedFor in the same step.
func (op *Op) Announce(channel string, msg []byte) *Op {
	op.Channel, op.Notice = channel, msg
	return op
}

// Unannounced is the key an in-order store sets when it swapped without
// publishing the notice: while it stands, instances must not keep copies
// past their TTL, since they may have missed a change. It lasts
// UnannouncedFor, longer than any copy is kept.
const Unannounced = "meta:unannounced"

// UnannouncedFor is how long Unannounced stands after a write that went
// unannounced.
const UnannouncedFor = 10 * time.Minute

// GetOp returns an Op that reads key.
func GetOp(key string) *Op { return &Op{Kind: OpGet, Key: key} }

// SetOp returns an Op that stores value under key.
func SetOp(key string, value []byte, ttl time.Duration) *Op {
	return &Op{Kind: OpSet, Key: key, Arg: value, TTL: ttl}
}

// DeleteOp returns an Op that deletes key.
func DeleteOp(key string) *Op { return &Op{Kind: OpDelete, Key: key} }

// CompareAndSwapOp returns an Op that replaces old with value under key.
func CompareAndSwapOp(key string, old, value []byte, ttl time.Duration) *Op {
	return &Op{Kind: OpCompareAndSwap, Key: key, Old: old, Arg: value, TTL: ttl}
}

// IncrementOp returns an Op that counts one at key.
func IncrementOp(key string, ttl time.Duration) *Op {
	return &Op{Kind: OpIncrement, Key: key, TTL: ttl}
}

// PublishOp returns an Op that publishes msg on channel.
func PublishOp(channel string, msg []byte) *Op {
	return &Op{Kind: OpPublish, Key: channel, Arg: msg}
}

// CheckOps refuses a batch no store can run, naming the op: stores call
// it before sending anything. A store that is not a Notifier passes
// notices false, and publishing is refused.
func CheckOps(ops []*Op, notices bool) error {
	for i, op := range ops {
		switch {
		case op == nil:
			return fmt.Errorf("store: batch op %d: nil", i)
		case op.Kind < OpGet || op.Kind > OpPublish:
			return fmt.Errorf("store: batch op %d: unknown kind %d", i, op.Kind)
		case op.TTL < 0:
			return fmt.Errorf("store: batch op %d (%s %q): negative ttl %s", i, op.Kind, op.Key, op.TTL)
		case op.Kind == OpPublish && !notices:
			return fmt.Errorf("store: batch op %d: publish on a store without notices", i)
		case op.Channel != "" && op.Kind != OpCompareAndSwap:
			return fmt.Errorf("store: batch op %d (%s %q): only a compare-and-swap announces", i, op.Kind, op.Key)
		case op.Channel != "" && !notices:
			return fmt.Errorf("store: batch op %d (%s %q): announced on a store without notices", i, op.Kind, op.Key)
		}
		op.Value, op.Found, op.Swapped, op.Count = nil, false, false, 0
	}
	return nil
}

// RunBatch runs ops as one batch when st is a Batcher, and otherwise one
// by one through st's own methods, in order, stopping at the first
// error: the same results and guarantees, only more round trips.
func RunBatch(ctx context.Context, st Store, ops ...*Op) error {
	if len(ops) == 0 {
		return nil
	}
	if b, ok := st.(Batcher); ok {
		return b.Batch(ctx, ops...)
	}
	n, notices := st.(Notifier)
	if err := CheckOps(ops, notices); err != nil {
		return err
	}
	for _, op := range ops {
		var err error
		switch op.Kind {
		case OpGet:
			op.Value, err = st.Get(ctx, op.Key)
			op.Found = err == nil
			if errors.Is(err, ErrNotFound) {
				err = nil
			}
		case OpSet:
			err = st.Set(ctx, op.Key, op.Arg, op.TTL)
		case OpDelete:
			err = st.Delete(ctx, op.Key)
		case OpCompareAndSwap:
			op.Swapped, err = st.CompareAndSwap(ctx, op.Key, op.Old, op.Arg, op.TTL)
			if err == nil && op.Swapped && op.Channel != "" {
				// Not atomic with the swap: only a store that is not a
				// Batcher gets here, and none of ours is.
				err = n.Publish(ctx, op.Channel, op.Notice)
			}
		case OpIncrement:
			op.Count, err = st.Increment(ctx, op.Key, op.TTL)
		case OpPublish:
			err = n.Publish(ctx, op.Key, op.Arg)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
