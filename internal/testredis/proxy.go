package testredis

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to a Redis server and can go silent:
// connections stay open but nothing passes, as with a network partition
// or a frozen server, which a client only notices by its timeouts. It can
// also drop only the replies: commands run, but their callers time out
// not knowing it.
type Proxy struct {
	Addr   string
	target string
	ln     net.Listener

	mu      sync.Mutex
	silent  bool
	noReply bool
	conns   map[net.Conn]bool
}

// StartProxy forwards a loopback port to target until the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.closeAll()
	})
	return p
}

// Silence stops forwarding, on open connections and new ones.
func (p *Proxy) Silence() {
	p.mu.Lock()
	p.silent = true
	p.mu.Unlock()
}

// DropReplies keeps forwarding commands to Redis but drops its replies,
// on open connections and new ones: each command runs, and its caller
// times out as if the reply was lost on the way.
func (p *Proxy) DropReplies() {
	p.mu.Lock()
	p.noReply = true
	p.mu.Unlock()
}

// Resume ends the silence or the dropped replies: the connections that
// saw it are closed (their streams are broken) and new ones are forwarded
// again.
func (p *Proxy) Resume() {
	p.closeAll()
	p.mu.Lock()
	p.silent, p.noReply = false, false
	p.mu.Unlock()
}

func (p *Proxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *Proxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns[c] = true
	p.mu.Unlock()
}

// drops reports whether what goes one way (reply: from Redis) is dropped
// now.
func (p *Proxy) drops(reply bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.silent || (reply && p.noReply)
}

func (p *Proxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.track(client)
		go func() {
			server, err := net.Dial("tcp", p.target)
			if err != nil {
				client.Close()
				return
			}
			p.track(server)
			go p.pipe(server, client, false)
			p.pipe(client, server, true)
		}()
	}
}

// pipe copies from src to dst, dropping what arrives while silent, or
// while replies are dropped if reply (src is Redis).
func (p *Proxy) pipe(dst, src net.Conn, reply bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.drops(reply) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
