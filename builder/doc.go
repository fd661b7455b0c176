// Package builder will build Source packages: configure, make, make install
// into /opt/tpm/buckets/NAME, and the symlink farm into the prefix.
package builder
