// Package builder builds Source packages and plans their symlink farm.
//
// Build unpacks data/ of a Source .tpkg (with the same hostile-input rules as
// a binary install, and no link that leads outside the tree) into a fresh
// private directory, runs ./configure --prefix=PREFIX/opt/tpm/buckets/NAME,
// make and make install DESTDIR=STAGE there, each in its own process group
// under one timeout, and lists what make install put in the bucket. The
// caller swaps the staged bucket into place with a rename and creates the
// links that Links plans. The package knows nothing of actors or receipts.
package builder
