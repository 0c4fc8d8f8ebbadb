// Package redis keeps the gateway's state in Redis, so several Caddy
// instances share enrolments, codes, limits and devices. It implements
// store.Store with Redis's own atomic operations: SET with PX for expiry,
// and small Lua scripts where a read and a write must happen as one
// (compare-and-swap, a counter's first expiry). Every script touches one
// key, so it runs on Redis Cluster too. An ordered index is a sorted set
// whose members all score 0, which Redis keeps in byte order: one key, so
// one Cluster slot.
package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/store"
)

// Store is a store.Store on a Redis client: standalone, Sentinel or
// Cluster, as redis.UniversalClient chooses from its options.
type Store struct {
	// Timeout bounds each command, retries and redirects included;
	// 0 leaves it to the client's options.
	Timeout time.Duration
	// Log receives interruptions of the change notices. Default: none.
	Log *zap.Logger
	// Ordered vouches that the client reaches one server (or a
	// Sentinel's master) directly, so notices arrive in the order the
	// server ran them (InOrder); never so on a Cluster. Default: false.
	Ordered bool

	client  redis.UniversalClient
	prefix  string
	breaker *breaker
}

// New returns a store using client, with every key under prefix (so one
// Redis can serve other applications too).
func New(client redis.UniversalClient, prefix string) *Store {
	return &Store{client: client, prefix: prefix, breaker: &breaker{now: time.Now}}
}

// Prefix is the prefix of every key.
func (s *Store) Prefix() string { return s.prefix }

// Close closes the client.
func (s *Store) Close() error { return s.client.Close() }

// Client returns the underlying client.
func (s *Store) Client() redis.UniversalClient { return s.client }

func (s *Store) key(k string) string { return s.prefix + k }

func unavailable(err error) error {
	return fmt.Errorf("%w: redis: %v", store.ErrUnavailable, err)
}

// run sends one command (or pipeline) through the breaker, within the
// timeout. redis.Nil is an answer, not a failure.
func (s *Store) run(ctx context.Context, cmd func(ctx context.Context) error) error {
	if !s.breaker.allow() {
		return unavailable(errBreakerOpen)
	}
	var err error
	settled := false
	defer func() {
		if !settled { // cmd panicked: the probe must not stay out forever
			s.breaker.done(ctx, errors.New("panic"))
		}
	}()
	cctx := ctx
	if s.Timeout > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, s.Timeout)
		defer cancel()
	}
	err = cmd(cctx)
	settled = true
	switch {
	case err == nil, errors.Is(err, redis.Nil):
		s.breaker.done(ctx, nil)
		return err
	case refused(err):
		// Redis answered: it is up, it refused this command (no
		// permission, a wrong type). Not a reason to stop trying.
		s.breaker.done(ctx, nil)
	default:
		// The caller's ctx, not cctx: our own deadline passing is a
		// failure of Redis, the caller giving up is not.
		s.breaker.done(ctx, err)
	}
	return unavailable(err)
}

// refused tells an error reply from a Redis that cannot serve (loading,
// a replica, a cluster or master down) and from no reply at all.
func refused(err error) bool {
	var reply redis.Error
	if !errors.As(err, &reply) {
		return false
	}
	for _, down := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOREPLICAS"} {
		if strings.HasPrefix(err.Error(), down) || strings.Contains(err.Error(), ": "+down) {
			return false
		}
	}
	return true
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.run(ctx, func(ctx context.Context) (err error) {
		v, err = s.client.Get(ctx, s.key(key)).Bytes()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

// Set implements store.Store.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl < 0 {
		return fmt.Errorf("store: negative ttl %s", ttl)
	}
	return s.run(ctx, func(ctx context.Context) error { return s.client.Set(ctx, s.key(key), value, ttl).Err() })
}

// Delete implements store.Store. Keys are deleted one by one: on Redis
// Cluster a multi-key DEL across hash slots is refused.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	return s.run(ctx, func(ctx context.Context) error {
		_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.Del(ctx, s.key(k))
			}
			return nil
		})
		return err
	})
}

// compareAndSwap: ARGV[1] "1" when the old value must be absent; ARGV[2]
// the old value; ARGV[3] "1" to delete; ARGV[4] the new value; ARGV[5] the
// ttl in milliseconds (0 for none); ARGV[6] a channel to publish ARGV[7] on
// when it swaps ("" for none). In a script, the notice is published in
// the same step as the write: no client sees one without the other. A
// user refused the channel still writes (pcall), as before notices went
// in the script; on a store whose notices are in order, KEYS[2] is then
// set for ARGV[8] milliseconds (store.Unannounced), which tells every
// instance that a write went unannounced.
var compareAndSwap = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur then return 0 end
elseif (not cur) or cur ~= ARGV[2] then
  return 0
end
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[1])
elseif tonumber(ARGV[5]) > 0 then
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
else
  redis.call('SET', KEYS[1], ARGV[4])
end
if ARGV[6] ~= '' then
  local sent = redis.pcall('PUBLISH', ARGV[6], ARGV[7])
  if type(sent) == 'table' and sent.err and KEYS[2] then
    redis.call('SET', KEYS[2], '1', 'PX', ARGV[8])
  end
end
return 1
`)

// CompareAndSwap implements store.Store.
func (s *Store) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if ttl < 0 {
		return false, fmt.Errorf("store: negative ttl %s", ttl)
	}
	absent, del := "0", "0"
	if old == nil {
		absent = "1"
	}
	if value == nil {
		del = "1"
	}
	var n int
	err := s.run(ctx, func(ctx context.Context) (err error) {
		n, err = compareAndSwap.Run(ctx, s.client, []string{s.key(key)},
			absent, old, del, value, strconv.FormatInt(ttl.Milliseconds(), 10), "", "").Int()
		return err
	})
	return n == 1, err
}

// increment counts, setting the expiry only when the counter is created.
var increment = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 and tonumber(ARGV[1]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
`)

// Increment implements store.Store.
func (s *Store) Increment(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	if ttl < 0 {
		return 0, fmt.Errorf("store: negative ttl %s", ttl)
	}
	var n int64
	err := s.run(ctx, func(ctx context.Context) (err error) {
		n, err = increment.Run(ctx, s.client, []string{s.key(key)}, strconv.FormatInt(ttl.Milliseconds(), 10)).Int64()
		return err
	})
	return n, err
}

// indexKey is where index lives: after the prefix, a NUL byte, which no
// key the engine writes begins with, keeps indexes apart from keys.
func (s *Store) indexKey(index string) string { return s.prefix + "\x00index:" + index }

func checkIndexArgs(index string, members []string) error {
	if index == "" {
		return errors.New("store: empty index name")
	}
	if slices.Contains(members, "") {
		return errors.New("store: empty index member")
	}
	return nil
}

// IndexPut implements store.Store.
func (s *Store) IndexPut(ctx context.Context, index string, members ...string) error {
	if err := checkIndexArgs(index, members); err != nil || len(members) == 0 {
		return err
	}
	z := make([]redis.Z, len(members))
	for i, m := range members {
		z[i] = redis.Z{Member: m}
	}
	return s.run(ctx, func(ctx context.Context) error { return s.client.ZAdd(ctx, s.indexKey(index), z...).Err() })
}

// IndexDelete implements store.Store.
func (s *Store) IndexDelete(ctx context.Context, index string, members ...string) error {
	if len(members) == 0 {
		return nil
	}
	m := make([]any, len(members))
	for i, v := range members {
		m[i] = v
	}
	return s.run(ctx, func(ctx context.Context) error { return s.client.ZRem(ctx, s.indexKey(index), m...).Err() })
}

// IndexPage implements store.Store.
func (s *Store) IndexPage(ctx context.Context, index, after string, limit int) ([]string, error) {
	if limit < 1 {
		return nil, fmt.Errorf("store: index page of %d members", limit)
	}
	from := "-"
	if after != "" {
		from = "(" + after
	}
	var out []string
	err := s.run(ctx, func(ctx context.Context) (err error) {
		out, err = s.client.ZRangeByLex(ctx, s.indexKey(index), &redis.ZRangeBy{Min: from, Max: "+", Count: int64(limit)}).Result()
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// lexRange turns [from, to) into ZRANGEBYLEX bounds.
func lexRange(from, to string) (string, string) {
	min, max := "-", "+"
	if from != "" {
		min = "[" + from
	}
	if to != "" {
		max = "(" + to
	}
	return min, max
}

// IndexRange implements store.Store with ZRANGEBYLEX.
func (s *Store) IndexRange(ctx context.Context, index, from, to string, limit int) ([]string, error) {
	if limit < 1 {
		return nil, fmt.Errorf("store: index range of %d members", limit)
	}
	min, max := lexRange(from, to)
	var out []string
	err := s.run(ctx, func(ctx context.Context) (err error) {
		out, err = s.client.ZRangeByLex(ctx, s.indexKey(index), &redis.ZRangeBy{Min: min, Max: max, Count: int64(limit)}).Result()
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// IndexCount implements store.Store: ZCARD for the whole index, ZLEXCOUNT
// for a range, both without reading the members.
func (s *Store) IndexCount(ctx context.Context, index, from, to string) (int, error) {
	var n int64
	err := s.run(ctx, func(ctx context.Context) (err error) {
		if from == "" && to == "" {
			n, err = s.client.ZCard(ctx, s.indexKey(index)).Result()
			return err
		}
		min, max := lexRange(from, to)
		n, err = s.client.ZLexCount(ctx, s.indexKey(index), min, max).Result()
		return err
	})
	return int(n), err
}

// logKey is where log lives: a stream, after the NUL that keeps it apart
// from keys, one key and so one Cluster slot.
func (s *Store) logKey(log string) string { return s.prefix + "\x00log:" + log }

// logField is the one field of each stream entry, holding the value.
const logField = "v"

// logRights names what a Redis ACL user needs for the logs, said when
// Redis refuses a log command for want of a right.
const logRights = "the ACL user needs +xadd, +xrange, +xrevrange and +xtrim for the logs"

// logErr adds the rights the logs need to a refusal for want of one.
func logErr(err error) error {
	if err != nil && strings.Contains(err.Error(), "NOPERM") {
		return fmt.Errorf("%w (%s)", err, logRights)
	}
	return err
}

// logAppend appends each ARGV as an entry of the stream KEYS[1], in one
// script so that a batch is all or nothing (and needs no MULTI in the ACL).
var logAppend = redis.NewScript(`
local ids = {}
for i, v in ipairs(ARGV) do
  ids[i] = redis.call('XADD', KEYS[1], '*', '` + logField + `', v)
end
return ids
`)

// LogAppend implements store.Store with XADD, in a script when there are
// several: Redis numbers the entries by its own clock, never below the
// stream's last ID.
func (s *Store) LogAppend(ctx context.Context, log string, values ...[]byte) ([]store.LogEntry, error) {
	if err := store.CheckLogAppend(log, values); err != nil {
		return nil, err
	}
	var ids []string
	err := s.run(ctx, func(ctx context.Context) error {
		if len(values) == 1 {
			id, err := s.client.XAdd(ctx, &redis.XAddArgs{Stream: s.logKey(log), ID: "*", Values: []any{logField, values[0]}}).Result()
			ids = []string{id}
			return err
		}
		args := make([]any, len(values))
		for i, v := range values {
			args[i] = v
		}
		var err error
		ids, err = logAppend.Run(ctx, s.client, []string{s.logKey(log)}, args...).StringSlice()
		return err
	})
	if err != nil {
		return nil, logErr(err)
	}
	if len(ids) != len(values) {
		return nil, unavailable(fmt.Errorf("log append: %d IDs for %d values", len(ids), len(values)))
	}
	es := make([]store.LogEntry, len(values))
	for i, v := range values {
		if es[i], err = logEntry(ids[i], append([]byte{}, v...)); err != nil {
			return nil, err
		}
	}
	return es, nil
}

// logEntry builds the entry of a stream ID.
func logEntry(id string, value []byte) (store.LogEntry, error) {
	ms, _, err := store.ParseLogID(id)
	if err != nil {
		return store.LogEntry{}, unavailable(err)
	}
	return store.LogEntry{ID: id, Time: time.UnixMilli(int64(ms)), Value: value}, nil
}

// LogRange implements store.Store with XRANGE or XREVRANGE, to as an
// exclusive bound.
func (s *Store) LogRange(ctx context.Context, log, from, to string, limit int, newestFirst bool) ([]store.LogEntry, error) {
	if err := store.CheckLogRange(log, from, to, limit); err != nil {
		return nil, err
	}
	if to == "0-0" {
		return nil, nil // nothing is before it, and Redis refuses "(0-0"
	}
	start, end := "-", "+"
	if from != "" {
		start = from
	}
	if to != "" {
		end = "(" + to
	}
	var msgs []redis.XMessage
	err := s.run(ctx, func(ctx context.Context) (err error) {
		if newestFirst {
			msgs, err = s.client.XRevRangeN(ctx, s.logKey(log), end, start, int64(limit)).Result()
		} else {
			msgs, err = s.client.XRangeN(ctx, s.logKey(log), start, end, int64(limit)).Result()
		}
		return err
	})
	if err != nil {
		return nil, logErr(err)
	}
	out := make([]store.LogEntry, 0, len(msgs))
	for _, m := range msgs {
		// An entry written by something else, without the field, reads
		// as a nil Value: a record that is not one.
		var value []byte
		if v, ok := m.Values[logField].(string); ok {
			value = []byte(v)
		}
		e, err := logEntry(m.ID, value)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// logTrimBatch bounds the entries one XTRIM removes, so a large backlog
// never holds Redis, and the appends waiting on it, for long.
const logTrimBatch = 10000

// LogTrim implements store.Store with XTRIM MINID: first approximate
// trims of at most logTrimBatch entries, which drop whole nodes of the
// stream, until they drop none; then one exact trim of what is left before
// the bound, less than a node.
func (s *Store) LogTrim(ctx context.Context, log string, before time.Time) (int, error) {
	if log == "" {
		return 0, errors.New("store: log trim: empty log name")
	}
	key, minID := s.logKey(log), store.LogIDAt(before)
	trim := func(approx bool) (int, error) {
		var n int64
		err := s.run(ctx, func(ctx context.Context) (err error) {
			if approx {
				n, err = s.client.XTrimMinIDApprox(ctx, key, minID, logTrimBatch).Result()
			} else {
				n, err = s.client.XTrimMinID(ctx, key, minID).Result()
			}
			return err
		})
		return int(n), logErr(err)
	}
	total := 0
	for {
		n, err := trim(true)
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 {
			break
		}
	}
	n, err := trim(false)
	return total + n, err
}

// scanCount is the COUNT hint of each SCAN: keys Redis examines per call.
const scanCount = 1000

// ScanKeys implements store.Store with SCAN, on every master of a
// Cluster (each holds its own slots), the masters at once.
func (s *Store) ScanKeys(ctx context.Context, prefix string, visit func(keys []string) error) error {
	match := globEscape(s.prefix+prefix) + "*"
	var (
		mu       sync.Mutex // visit is never called concurrently
		visitErr error
	)
	scan := func(ctx context.Context, node redis.Cmdable) error {
		var cursor uint64
		for {
			var keys []string
			err := s.run(ctx, func(ctx context.Context) (err error) {
				keys, cursor, err = node.Scan(ctx, cursor, match, scanCount).Result()
				return err
			})
			if err != nil {
				return err
			}
			batch := keys[:0]
			for _, k := range keys {
				if k = strings.TrimPrefix(k, s.prefix); !strings.HasPrefix(k, "\x00") {
					batch = append(batch, k)
				}
			}
			mu.Lock()
			if visitErr == nil && len(batch) > 0 {
				visitErr = visit(batch)
			}
			stop := visitErr != nil
			mu.Unlock()
			if stop || cursor == 0 {
				return nil
			}
		}
	}
	var err error
	if c, ok := s.client.(*redis.ClusterClient); ok {
		err = c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return scan(ctx, node) })
		if err != nil && !errors.Is(err, store.ErrUnavailable) {
			err = unavailable(err) // finding the masters failed
		}
	} else {
		err = scan(ctx, s.client)
	}
	if visitErr != nil {
		return visitErr
	}
	return err
}

// globEscape makes s match itself alone in a SCAN MATCH pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		switch c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// InOrder implements store.Notifier: a Cluster's nodes forward notices to
// each other over links that can drop them; one server, or a Sentinel's
// master, delivers them in the order it ran them, when nothing between
// (a proxy that may send connections to different servers) reorders
// them, which only the operator knows (Ordered).
func (s *Store) InOrder() bool {
	_, cluster := s.client.(*redis.ClusterClient)
	return s.Ordered && !cluster
}

// Publish implements store.Notifier.
func (s *Store) Publish(ctx context.Context, channel string, msg []byte) error {
	return s.run(ctx, func(ctx context.Context) error { return s.client.Publish(ctx, s.key(channel), msg).Err() })
}

// How often a quiet subscription checks that its connection is alive: a
// peer that vanished without closing the connection would otherwise leave
// it waiting for notices that can no longer come.
const subscriptionCheck = 5 * time.Second

// Subscribe implements store.Notifier. go-redis reports each
// subscription it makes, which is when restart is called; a connection
// that fails or stops answering is replaced.
func (s *Store) Subscribe(ctx context.Context, channel string, deliver func([]byte), restart func()) {
	var logged time.Time
	for ctx.Err() == nil {
		err := s.follow(ctx, s.client.Subscribe(ctx, s.key(channel)), deliver, restart)
		if ctx.Err() != nil {
			return
		}
		// Broken: what arrives after the next subscription is all that
		// will be known, so the caller must forget what it kept now.
		restart()
		if s.Log != nil && time.Since(logged) > time.Minute {
			logged = time.Now()
			s.Log.Warn("redis: change notices interrupted; retrying every second", zap.String("channel", s.key(channel)), zap.Error(err))
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// follow delivers messages from one subscription until it breaks.
func (s *Store) follow(ctx context.Context, ps *redis.PubSub, deliver func([]byte), restart func()) error {
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	defer ps.Close()
	pinged := false
	for {
		m, err := ps.ReceiveTimeout(ctx, subscriptionCheck)
		switch m := m.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				restart()
			}
		case *redis.Message:
			deliver([]byte(m.Payload))
		}
		if err == nil {
			pinged = false
			continue
		}
		var timeout interface{ Timeout() bool }
		if ctx.Err() == nil && !pinged && errors.As(err, &timeout) && timeout.Timeout() {
			// Quiet, not necessarily broken: the answer to a ping
			// arrives as a message within the next wait.
			if ps.Ping(ctx) == nil {
				pinged = true
				continue
			}
		}
		return err
	}
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Notifier = (*Store)(nil)
)

// Batch implements store.Batcher: the ops go as one pipeline, so a batch
// costs one round trip. On Cluster the client splits the pipeline by
// node and sends the parts in parallel, which still costs one round trip
// of latency. Compare-and-swap and increment run as scripts by their
// SHA; if Redis has lost them (a restart, SCRIPT FLUSH), those ops did
// not run: the scripts are loaded again and those ops sent again, unless
// the batch has another op on the same key after them, which would then
// have run first: a batch that touches a key twice sends its scripts'
// source at once.
func (s *Store) Batch(ctx context.Context, ops ...*store.Op) error {
	if err := store.CheckOps(ops, true); err != nil || len(ops) == 0 {
		return err
	}
	seen := make(map[string]bool, len(ops))
	twice := false
	for _, op := range ops {
		twice = twice || seen[op.Key]
		seen[op.Key] = true
	}
	cmds := make([]redis.Cmder, len(ops))
	return s.run(ctx, func(ctx context.Context) error {
		_, _ = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, op := range ops {
				cmds[i] = s.queue(ctx, p, op, twice)
			}
			return nil
		})
		var again []int
		for i, c := range cmds {
			if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
				again = append(again, i)
			}
		}
		if len(again) > 0 {
			// Loaded once, the scripts serve every later batch by SHA.
			source := compareAndSwap.Load(ctx, s.client).Err() != nil || increment.Load(ctx, s.client).Err() != nil
			_, _ = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, i := range again {
					cmds[i] = s.queue(ctx, p, ops[i], source)
				}
				return nil
			})
		}
		for i, c := range cmds {
			if err := batchResult(ops[i], c); err != nil {
				return fmt.Errorf("batch op %d (%s): %w", i, ops[i].Kind, err)
			}
		}
		return nil
	})
}

// queue adds op to the pipeline; source sends scripts by their source
// rather than their SHA.
func (s *Store) queue(ctx context.Context, p redis.Pipeliner, op *store.Op, source bool) redis.Cmder {
	keys := []string{s.key(op.Key)}
	key := keys[0]
	script := func(sc *redis.Script, args ...any) redis.Cmder {
		if source {
			return sc.Eval(ctx, p, keys, args...)
		}
		return sc.EvalSha(ctx, p, keys, args...)
	}
	switch op.Kind {
	case store.OpGet:
		return p.Get(ctx, key)
	case store.OpSet:
		return p.Set(ctx, key, op.Arg, op.TTL)
	case store.OpDelete:
		return p.Del(ctx, key)
	case store.OpCompareAndSwap:
		absent, del := "0", "0"
		if op.Old == nil {
			absent = "1"
		}
		if op.Arg == nil {
			del = "1"
		}
		channel, marked := "", ""
		if op.Channel != "" {
			channel = s.key(op.Channel)
			if s.InOrder() {
				// Not on a Cluster, where the key would be in another
				// slot: nothing keeps copies there anyway.
				keys = append(keys, s.key(store.Unannounced))
				marked = strconv.FormatInt(store.UnannouncedFor.Milliseconds(), 10)
			}
		}
		return script(compareAndSwap, absent, op.Old, del, op.Arg, strconv.FormatInt(op.TTL.Milliseconds(), 10), channel, op.Notice, marked)
	case store.OpIncrement:
		return script(increment, strconv.FormatInt(op.TTL.Milliseconds(), 10))
	}
	return p.Publish(ctx, key, op.Arg) // store.OpPublish; CheckOps refused the rest
}

// batchResult copies c's answer into op. A Get of a missing key is an
// answer (not found), not an error.
func batchResult(op *store.Op, c redis.Cmder) error {
	switch c := c.(type) {
	case *redis.StringCmd:
		v, err := c.Bytes()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		op.Value, op.Found = v, err == nil
		return err
	case *redis.Cmd:
		n, err := c.Int64()
		op.Swapped = op.Kind == store.OpCompareAndSwap && n == 1
		if op.Kind == store.OpIncrement {
			op.Count = n
		}
		return err
	}
	return c.Err()
}

var _ store.Batcher = (*Store)(nil)
