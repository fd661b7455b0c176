// Package human writes values for people to read: byte counts, and input
// quoted in a one-line message. The CLI, the repository's pages and the
// parsers' errors share it, so the same value reads the same everywhere.
package human

import (
	"fmt"
	"strconv"
)

// Bytes is n with a binary unit, one decimal above a KiB ("1.5 MiB").
func Bytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// quoteMax is the most of a string Quote shows.
const quoteMax = 64

// Quote quotes s for a one-line error message, shortening it when long, so
// that hostile input can neither break the line nor flood the log.
func Quote(s string) string {
	if len(s) > quoteMax {
		return strconv.Quote(s[:quoteMax]) + "..."
	}
	return strconv.Quote(s)
}

// Byte names c for an error message; bytes outside printable ASCII are
// shown by value since they may be a fragment of a UTF-8 sequence.
func Byte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return "character " + strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}
