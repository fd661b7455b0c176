package messages

import (
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	ok := `{"v":2,"id":"abc-1","verb":"info","args":["hello"],"reply":"/tmp/x/reply.fifo"}`
	r, err := ParseRequest([]byte(ok), QueryVerbs)
	if err != nil || r.Verb != "info" || r.Args[0] != "hello" {
		t.Fatalf("good request: %+v %v", r, err)
	}
	cases := []struct {
		line      string
		withReply bool // the daemon can still answer
		want      string
	}{
		{`garbage`, false, "not valid JSON"},
		{`{"v":2,"id":"a","verb":"info"}`, false, "no absolute reply FIFO"},
		{`{"v":2,"id":"a","verb":"info","reply":"rel/fifo"}`, false, "no absolute reply FIFO"},
		{`{"v":2,"id":"a","verb":"info","reply":"/r","extra":1}`, false, "unknown field"},
		{`{"v":2,"id":"a","verb":"info","reply":"/r"} {}`, false, "after the JSON object"},
		{`{"v":1,"id":"a","verb":"info","reply":"/r"}`, true, "different releases"},
		{`{"v":2,"id":"a","verb":"remove","reply":"/r","options":{"force":true}}`, false, "unknown field"},
		{`{"v":2,"id":"a b","verb":"info","reply":"/r"}`, true, "request id"},
		{`{"v":2,"id":"a","verb":"install","reply":"/r"}`, true, `"install" is not a request this FIFO takes`},
		{strings.Repeat(" ", MaxRequest+1), false, "longer than"},
	}
	for _, tc := range cases {
		r, err := ParseRequest([]byte(tc.line), QueryVerbs)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.40q: got %v, want %q", tc.line, err, tc.want)
		}
		if (r != nil) != tc.withReply {
			t.Errorf("%.40q: request returned = %v, want %v", tc.line, r != nil, tc.withReply)
		}
	}
}
