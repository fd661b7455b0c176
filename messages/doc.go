// Package messages holds the messages the daemons' actors exchange: plain
// values that travel only inside one tpmd process. They may carry the
// domain's immutable values (an index snapshot, a generation, a build's
// spec and result) and PIDs, never a context, a func or a channel.
//
// What crosses a process boundary (the FIFO protocol between tpm and tpmd)
// is package messages/wire, which imports nothing of the project.
package messages
