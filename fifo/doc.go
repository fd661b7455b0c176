// Package fifo will hold the FIFO transport between tpm and tpmd: paths,
// permissions, framing, lockfiles and reply FIFOs.
package fifo
