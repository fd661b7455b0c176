//go:build !tpmd_testhooks

package main

import "github.com/spf13/pflag"

// addTestFlags adds nothing: the test-only flags exist in test builds only
// (testhooks.go).
func addTestFlags(*pflag.FlagSet, *hostOptions) {}
