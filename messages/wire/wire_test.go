package wire

import (
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	ok := `{"v":3,"verb":"info","args":["hello"]}`
	r, err := ParseRequest([]byte(ok), QueryVerbs)
	if err != nil || r.Verb != "info" || r.Args[0] != "hello" {
		t.Fatalf("good request: %+v %v", r, err)
	}
	for _, tc := range []struct {
		line string
		want string
	}{
		{`garbage`, "not valid JSON"},
		{`{"v":3,"verb":"info","reply":"/r"}`, "unknown field"},
		{`{"v":3,"id":"a","verb":"info"}`, "unknown field"},
		{`{"v":3,"verb":"info"} {}`, "after the JSON object"},
		{`{"v":2,"verb":"info"}`, "different releases"},
		{`{"v":3,"verb":"remove","options":{"force":true}}`, "unknown field"},
		{`{"v":3,"verb":"install"}`, "install changes the host: it must be sent to the admin FIFO"},
		{`{"v":3,"verb":"frobnicate"}`, `"frobnicate" is not a request this FIFO takes`},
		{strings.Repeat(" ", MaxRequest+1), "longer than"},
	} {
		if r, err := ParseRequest([]byte(tc.line), QueryVerbs); err == nil || r != nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.40q: got %+v %v, want %q", tc.line, r, err, tc.want)
		}
	}
}
