package human

import (
	"strings"
	"testing"
)

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestQuote(t *testing.T) {
	if got := Quote("a\nb"); got != `"a\nb"` {
		t.Errorf("Quote keeps the line: %s", got)
	}
	long := Quote(strings.Repeat("x", 100))
	if !strings.HasSuffix(long, `"...`) || len(long) != quoteMax+2+3 {
		t.Errorf("Quote of 100 bytes: %s", long)
	}
}

func TestByte(t *testing.T) {
	if got := Byte('a'); got != "character 'a'" {
		t.Errorf("Byte('a') = %s", got)
	}
	if got := Byte(0xc3); got != "byte 0xc3" {
		t.Errorf("Byte(0xc3) = %s", got)
	}
}
