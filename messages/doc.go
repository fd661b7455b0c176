// Package messages holds every message the daemons' actors exchange and the
// versioned FIFO wire protocol between tpm and tpmd. It sits below every
// domain package and imports none of them, so any package may speak it.
package messages
