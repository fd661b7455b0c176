// Package version orders and checks package versions of the form
// [epoch:]version[-release], exactly as pacman's vercmp orders them.
//
// Compare is a port of alpm_pkg_vercmp, parseEVR and rpmvercmp from pacman's
// lib/libalpm/version.c. It keeps pacman's quirks on purpose: packagers who know
// pacman's order get the same answers from tpm, and pacman's own test cases
// pass unchanged.
package version

import (
	"fmt"
	"strings"

	"tpm/human"
)

// MaxLen is the longest version string Valid accepts, in bytes.
const MaxLen = 128

// Compare returns -1 if a is older than b, 0 if they are the same version and
// 1 if a is newer. Epochs are compared first (a missing epoch is 0), then
// versions, then releases, but releases only when both sides have one, so
// "1.5" equals "1.5-1".
//
// Compare is defined for any strings, valid or not, and agrees with pacman for
// every string without a NUL byte.
func Compare(a, b string) int {
	if a == b {
		return 0
	}
	e1, v1, r1, hasRel1 := parseEVR(a)
	e2, v2, r2, hasRel2 := parseEVR(b)
	if ret := rpmvercmp(e1, e2); ret != 0 {
		return ret
	}
	ret := rpmvercmp(v1, v2)
	if ret == 0 && hasRel1 && hasRel2 {
		ret = rpmvercmp(r1, r2)
	}
	return ret
}

// parseEVR splits evr as pacman does: the epoch is a run of leading digits
// ended by ':' (empty means "0"), the release is whatever follows the last '-'.
func parseEVR(evr string) (epoch, ver, rel string, hasRel bool) {
	s := 0
	for s < len(evr) && isDigit(evr[s]) {
		s++
	}
	// The leading digits cannot hold a '-', so the last '-' after them is the
	// last '-' of the whole string, as strrchr finds it in pacman.
	se := strings.LastIndexByte(evr, '-')

	epoch, ver = "0", evr
	if s < len(evr) && evr[s] == ':' {
		epoch, ver = evr[:s], evr[s+1:]
		if epoch == "" {
			epoch = "0"
		}
		se -= s + 1 // se now indexes ver
	}
	if se >= 0 {
		return epoch, ver[:se], ver[se+1:], true
	}
	return epoch, ver, "", false
}

// rpmvercmp compares alternating runs of digits and of letters; every other
// byte only separates runs. Its rules, kept from pacman:
//   - a longer separator wins ("2___a" > "2_a"), otherwise separators are
//     interchangeable ("2.0" == "2_0");
//   - numbers compare by value of any length, leading zeros ignored;
//   - letters compare bytewise;
//   - a number beats letters ("1.0.1" > "1.0a");
//   - when one side runs out, extra letters lose ("1.0a" < "1.0") and anything
//     else wins ("1.0.a" > "1.0", "1.0.1" > "1.0").
func rpmvercmp(a, b string) int {
	if a == b {
		return 0
	}
	// one and two start the current segments; p1 and p2 end the previous ones,
	// so one-p1 is the length of the separator in front of a segment.
	one, two, p1, p2 := 0, 0, 0, 0
	for one < len(a) && two < len(b) {
		one, two = skipSeparators(a, one), skipSeparators(b, two)
		if one == len(a) || two == len(b) {
			break
		}
		if sep1, sep2 := one-p1, two-p2; sep1 != sep2 {
			return sign(sep1 - sep2)
		}
		// The segment's kind (digits or letters) is taken from a; b's segment
		// is the run of that same kind, which may be empty.
		isNum := isDigit(a[one])
		p1, p2 = runEnd(a, one, isNum), runEnd(b, two, isNum)
		if c := compareSegments(a[one:p1], b[two:p2], isNum); c != 0 {
			return c
		}
		one, two = p1, p2
	}
	return compareRest(a, b, one, two)
}

// skipSeparators is the index of the first letter or digit of s from i on.
func skipSeparators(s string, i int) int {
	for i < len(s) && !isAlnum(s[i]) {
		i++
	}
	return i
}

// runEnd is the end of the run of digits (isNum) or letters starting at i.
func runEnd(s string, i int, isNum bool) int {
	same := isAlpha
	if isNum {
		same = isDigit
	}
	for i < len(s) && same(s[i]) {
		i++
	}
	return i
}

// compareSegments compares a's segment with b's run of the same kind:
// numbers by value, letters bytewise.
func compareSegments(seg1, seg2 string, isNum bool) int {
	// b has the other kind of segment here: numbers are newer.
	if seg2 == "" {
		if isNum {
			return 1
		}
		return -1
	}
	if isNum {
		seg1 = strings.TrimLeft(seg1, "0")
		seg2 = strings.TrimLeft(seg2, "0")
		if len(seg1) != len(seg2) {
			return sign(len(seg1) - len(seg2))
		}
	}
	return strings.Compare(seg1, seg2)
}

// compareRest decides once every segment before one in a and two in b
// matched; only the separators between them may have differed.
func compareRest(a, b string, one, two int) int {
	if one == len(a) && two == len(b) {
		return 0
	}
	// One side has more. A remaining alpha segment never beats an empty string.
	if (one == len(a) && !isAlpha(b[two])) || (one < len(a) && isAlpha(a[one])) {
		return -1
	}
	return 1
}

// Valid reports whether v is a well-formed [epoch:]version[-release]: an
// optional epoch of digits, a version that starts with a letter or digit and
// holds only letters, digits and . _ + ~, and an optional non-empty release of
// letters, digits and . _ +. The whole string is at most MaxLen bytes.
//
// Compare accepts anything; Valid exists so that what tpm publishes and
// installs is never ambiguous to split.
func Valid(v string) error {
	fail := func(format string, args ...any) error {
		return &SyntaxError{Version: v, Reason: fmt.Sprintf(format, args...)}
	}
	if v == "" {
		return fail("is empty; want [epoch:]version[-release]")
	}
	if len(v) > MaxLen {
		return fail("is %d bytes long; at most %d are allowed", len(v), MaxLen)
	}
	if strings.Count(v, ":") > 1 {
		return fail(`has more than one ":"; want [epoch:]version[-release]`)
	}
	if strings.Count(v, "-") > 1 {
		return fail(`has more than one "-"; want [epoch:]version[-release]`)
	}

	rest := v
	if epoch, after, ok := strings.Cut(v, ":"); ok {
		if epoch == "" {
			return fail(`epoch before ":" is empty`)
		}
		for i := 0; i < len(epoch); i++ {
			if !isDigit(epoch[i]) {
				return fail(`epoch before ":" has %s; only digits are allowed`, human.Byte(epoch[i]))
			}
		}
		rest = after
	}

	ver, rel, hasRel := strings.Cut(rest, "-")
	if ver == "" {
		return fail("version part is empty")
	}
	if !isAlnum(ver[0]) {
		return fail("version part starts with %s; it must start with a letter or digit", human.Byte(ver[0]))
	}
	for i := 0; i < len(ver); i++ {
		if c := ver[i]; !isAlnum(c) && !strings.ContainsRune("._+~", rune(c)) {
			return fail("version part has %s; allowed are letters, digits and . _ + ~", human.Byte(c))
		}
	}
	if hasRel {
		if rel == "" {
			return fail(`release after "-" is empty`)
		}
		for i := 0; i < len(rel); i++ {
			if c := rel[i]; !isAlnum(c) && !strings.ContainsRune("._+", rune(c)) {
				return fail(`release after "-" has %s; allowed are letters, digits and . _ +`, human.Byte(c))
			}
		}
	}
	return nil
}

// SyntaxError is the error Valid returns. Reason lets callers name the field
// the version came from without repeating the word "version".
type SyntaxError struct {
	Version string // the string that was checked
	Reason  string // what is wrong with it, one line
}

func (e *SyntaxError) Error() string {
	return "version " + human.Quote(e.Version) + ": " + e.Reason
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// The classes are C's isdigit/isalpha/isalnum in the C locale, which is what
// pacman uses: ASCII only, every other byte separates segments.
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }
