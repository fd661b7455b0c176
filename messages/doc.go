// Package messages will hold every message the daemons' actors exchange and
// the versioned FIFO wire protocol between tpm and tpmd.
package messages
