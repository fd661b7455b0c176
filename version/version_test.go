package version

import (
	"strings"
	"testing"
)

// pacmanCases are all the cases of pacman's test/util/vercmptest.sh, in its
// order. Like that script, the test also checks each case mirrored.
var pacmanCases = []struct {
	a, b string
	want int
}{
	// all similar length, no pkgrel
	{"1.5.0", "1.5.0", 0},
	{"1.5.1", "1.5.0", 1},
	// mixed length
	{"1.5.1", "1.5", 1},
	// with pkgrel, simple
	{"1.5.0-1", "1.5.0-1", 0},
	{"1.5.0-1", "1.5.0-2", -1},
	{"1.5.0-1", "1.5.1-1", -1},
	{"1.5.0-2", "1.5.1-1", -1},
	// with pkgrel, mixed lengths
	{"1.5-1", "1.5.1-1", -1},
	{"1.5-2", "1.5.1-1", -1},
	{"1.5-2", "1.5.1-2", -1},
	// mixed pkgrel inclusion
	{"1.5", "1.5-1", 0},
	{"1.5-1", "1.5", 0},
	{"1.1-1", "1.1", 0},
	{"1.0-1", "1.1", -1},
	{"1.1-1", "1.0", 1},
	// alphanumeric versions
	{"1.5b-1", "1.5-1", -1},
	{"1.5b", "1.5", -1},
	{"1.5b-1", "1.5", -1},
	{"1.5b", "1.5.1", -1},
	// from the manpage
	{"1.0a", "1.0alpha", -1},
	{"1.0alpha", "1.0b", -1},
	{"1.0b", "1.0beta", -1},
	{"1.0beta", "1.0rc", -1},
	{"1.0rc", "1.0", -1},
	// going crazy? alpha-dotted versions
	{"1.5.a", "1.5", 1},
	{"1.5.b", "1.5.a", 1},
	{"1.5.1", "1.5.b", 1},
	// alpha dots and dashes
	{"1.5.b-1", "1.5.b", 0},
	{"1.5-1", "1.5.b", -1},
	// same/similar content, differing separators
	{"2.0", "2_0", 0},
	{"2.0_a", "2_0.a", 0},
	{"2.0a", "2.0.a", -1},
	{"2___a", "2_a", 1},
	// epoch included version comparisons
	{"0:1.0", "0:1.0", 0},
	{"0:1.0", "0:1.1", -1},
	{"1:1.0", "0:1.0", 1},
	{"1:1.0", "0:1.1", 1},
	{"1:1.0", "2:1.1", -1},
	// epoch + sometimes present pkgrel
	{"1:1.0", "0:1.0-1", 1},
	{"1:1.0-1", "0:1.1-1", 1},
	// epoch included on one version
	{"0:1.0", "1.0", 0},
	{"0:1.0", "1.1", -1},
	{"0:1.1", "1.0", 1},
	{"1:1.0", "1.0", 1},
	{"1:1.0", "1.1", 1},
	{"1:1.1", "1.1", 1},
}

// moreCases go beyond pacman's script: dates, VCS snapshots, leading zeros,
// long numbers and the separators pacman treats like any other. Each answer
// was checked against pacman's C code.
var moreCases = []struct {
	a, b string
	want int
}{
	// numbers compare by value, of any length
	{"1.10", "1.9", 1},
	{"1.01", "1.1", 0},
	{"1.001", "1.1", 0},
	{"1.00", "1.0", 0},
	{"1.0", "1.0.0", -1},
	{"123456789012345678901234567890", "123456789012345678901234567889", 1},
	{"0123456789012345678901234567890", "123456789012345678901234567890", 0},
	// dates
	{"20240101", "20231231", 1},
	{"2024.01.02", "2024.1.2", 0},
	{"2024.01.10", "2024.1.9", 1},
	{"2024_01_01", "2024.01.01", 0},
	// VCS snapshots as makepkg's pkgver() writes them
	{"1.2.r10.g1234abc", "1.2.r9.gfedcba9", 1},
	{"1.2.r9.g1234abc", "1.2", 1},
	{"r100.abcdef0", "r99.abcdef0", 1},
	{"1.2.r9.gabc", "1.2.r9.gabd", -1},
	{"0.1+12+g1234567", "0.1+3+g1234567", 1},
	{"0.1+12+g1234567", "0.1", 1},
	// '~' and '+' are mere separators to pacman: "1.0~rc1" is after "1.0"
	{"1.0~rc1", "1.0", 1},
	{"1.0+1", "1.0", 1},
	{"1.0~rc1", "1.0.rc1", 0},
	// a number always beats letters
	{"1.0.1", "1.0a", 1},
	{"1a", "1", -1},
	{"a", "1", -1},
	{"1.0", "1.0a", 1},
	{"1.0.a", "1.0", 1},
	{"1.0a1", "1.0a", 1},
	{"1.0a1", "1.0b", -1},
	{"1.0A", "1.0a", -1}, // letters compare bytewise
	// releases
	{"1.0-2", "1.0-10", -1},
	{"1.0-1", "1.0-1.1", -1},
	{"1.0-1.1", "1.0-1.01", 0},
	{"1.0-1", "1.0-1", 0},
	// epochs
	{":1.0", "1.0", 0},
	{"01:1.0", "1:1.0", 0},
	{"10:1.0", "9:2.0", 1},
	{"1:0", "999999", 1},
	// oddities that Valid rejects but Compare still orders as pacman does
	{"", "", 0},
	{"", "1", -1},
	{"", "a", 1},
	{"1-2-3", "1-2-4", -1},
	{"1.0-", "1.0-1", -1},
	{"1:2:3", "1:2:4", -1},
	{"é1", "1", 1},
}

func TestCompare(t *testing.T) {
	cases := append(pacmanCases[:len(pacmanCases):len(pacmanCases)], moreCases...)
	for _, tc := range cases {
		if got := Compare(tc.a, tc.b); got != tc.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := Compare(tc.b, tc.a); got != -tc.want {
			t.Errorf("Compare(%q, %q) = %d, want %d (mirror)", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestComparePacmanCount(t *testing.T) {
	// vercmptest.sh plans 92 checks: 46 cases and their mirrors.
	if len(pacmanCases) != 46 {
		t.Fatalf("have %d of pacman's 46 cases", len(pacmanCases))
	}
}

func TestParseEVR(t *testing.T) {
	tests := []struct {
		in              string
		epoch, ver, rel string
		hasRel          bool
	}{
		{"1.0", "0", "1.0", "", false},
		{"1.0-2", "0", "1.0", "2", true},
		{"3:1.0-2", "3", "1.0", "2", true},
		{"3:1.0", "3", "1.0", "", false},
		{":1.0", "0", "1.0", "", false},
		{"a:1.0", "0", "a:1.0", "", false},
		{"1-2-3", "0", "1-2", "3", true},
		{"1:2-3:4", "1", "2", "3:4", true},
		{"1.0-", "0", "1.0", "", true},
		{"-", "0", "", "", true},
		{"", "0", "", "", false},
	}
	for _, tt := range tests {
		e, v, r, ok := parseEVR(tt.in)
		if e != tt.epoch || v != tt.ver || r != tt.rel || ok != tt.hasRel {
			t.Errorf("parseEVR(%q) = %q, %q, %q, %v; want %q, %q, %q, %v",
				tt.in, e, v, r, ok, tt.epoch, tt.ver, tt.rel, tt.hasRel)
		}
	}
}

func TestValid(t *testing.T) {
	good := []string{
		"1", "1.0", "1.0-1", "1:1.0-1", "0:1", "2.0rc1", "1.0~rc1", "1.0+git20240101",
		"1_2", "a", "1.2.r10.g1234abc-3", "1.0-1.1", "1.0-1+b2", "12345:1",
		strings.Repeat("1", MaxLen),
	}
	for _, v := range good {
		if err := Valid(v); err != nil {
			t.Errorf("Valid(%q) = %v, want nil", v, err)
		}
	}

	bad := []struct{ in, want string }{
		{"", `version "": is empty; want [epoch:]version[-release]`},
		{strings.Repeat("1", MaxLen+1), "129 bytes long; at most 128"},
		{"1..0-", `version "1..0-": release after "-" is empty`},
		{"1:2:3", `more than one ":"`},
		{"1-2-3", `more than one "-"`},
		{":1.0", `epoch before ":" is empty`},
		{"a:1.0", `epoch before ":" has character 'a'; only digits are allowed`},
		{"1-2:3", `epoch before ":" has character '-'`},
		{"1:", "version part is empty"},
		{"-1", "version part is empty"},
		{"1:-1", "version part is empty"},
		{".1", "version part starts with character '.'; it must start with a letter or digit"},
		{"~1", "starts with character '~'"},
		{"1.0 beta", "version part has character ' '; allowed are letters, digits and . _ + ~"},
		{"1/0", "version part has character '/'"},
		{"1.0\n", "version part has byte 0x0a"},
		{"1.0é", "version part has byte 0xc3"},
		{"1.0-1~2", `release after "-" has character '~'; allowed are letters, digits and . _ +`},
		{"1.0-1 ", `release after "-" has character ' '`},
	}
	for _, tt := range bad {
		err := Valid(tt.in)
		if err == nil {
			t.Errorf("Valid(%q) = nil, want error containing %q", tt.in, tt.want)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tt.want) {
			t.Errorf("Valid(%q) = %q, want it to contain %q", tt.in, msg, tt.want)
		}
		if strings.ContainsAny(msg, "\n\r") {
			t.Errorf("Valid(%q) error is not one line: %q", tt.in, msg)
		}
		if len(msg) > 200 {
			t.Errorf("Valid(%q) error is %d bytes long", tt.in, len(msg))
		}
	}
}

func TestValidSyntaxError(t *testing.T) {
	err := Valid("1..0-")
	se, ok := err.(*SyntaxError)
	if !ok {
		t.Fatalf("Valid error is %T, want *SyntaxError", err)
	}
	if se.Version != "1..0-" || se.Reason != `release after "-" is empty` {
		t.Errorf("got %+v", se)
	}
}

// FuzzCompare checks the properties every caller relies on: no panic, results
// in {-1, 0, 1}, antisymmetry, and reflexivity.
func FuzzCompare(f *testing.F) {
	for _, tc := range pacmanCases {
		f.Add(tc.a, tc.b)
	}
	for _, tc := range moreCases {
		f.Add(tc.a, tc.b)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, ba := Compare(a, b), Compare(b, a)
		if ab < -1 || ab > 1 {
			t.Fatalf("Compare(%q, %q) = %d", a, b, ab)
		}
		if ab != -ba {
			t.Fatalf("Compare(%q, %q) = %d but Compare(%q, %q) = %d", a, b, ab, b, a, ba)
		}
		if Compare(a, a) != 0 {
			t.Fatalf("Compare(%q, %q) != 0", a, a)
		}
		_ = Valid(a)
	})
}
