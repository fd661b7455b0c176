// Package signing makes and checks the repository's signatures: an Ed25519
// key pair in minisign's format (so Debian's minisign tool verifies what tpm
// signs), the server's detached signature of /index.db, and the client's
// check of it.
//
// The private key is stored unencrypted because tpmd server signs every new
// generation unattended; the file's permissions are its protection, and
// LoadKey refuses a key that every user may read.
package signing

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"aead.dev/minisign"
)

// The file names tpm keygen writes.
const (
	KeyFile       = "repo.key"
	PublicKeyFile = "repo.pub"
)

// ErrBadSignature means a signature does not verify with the public key.
var ErrBadSignature = errors.New("signature does not verify with the repository's public key")

// Keygen writes a new key pair into dir as repo.key (mode 0600) and repo.pub
// (0644). It refuses to replace an existing key unless force is set, since a
// new key makes every client's copy of the public key useless.
func Keygen(dir string, force bool) (keyPath, pubPath string, err error) {
	keyPath, pubPath = filepath.Join(dir, KeyFile), filepath.Join(dir, PublicKeyFile)
	if !force {
		for _, p := range []string{keyPath, pubPath} {
			if _, err := os.Lstat(p); err == nil {
				return "", "", fmt.Errorf("%s exists; remove it first or pass --force to replace the key pair", p)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("keygen: %w", err)
	}
	pub, priv, err := minisign.GenerateKey(nil)
	if err != nil {
		return "", "", fmt.Errorf("keygen: %w", err)
	}
	privText, err := priv.MarshalText()
	if err != nil {
		return "", "", fmt.Errorf("keygen: %w", err)
	}
	pubText, err := pub.MarshalText()
	if err != nil {
		return "", "", fmt.Errorf("keygen: %w", err)
	}
	if err := writeFileAtomic(keyPath, privText, 0o600); err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(pubPath, append(pubText, '\n'), 0o644); err != nil {
		return "", "", err
	}
	return keyPath, pubPath, nil
}

// writeFileAtomic writes data to a temporary file beside path, syncs it and
// renames it into place, so a crash never leaves half a key.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly once renamed
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Key is the repository's private key.
type Key struct {
	priv minisign.PrivateKey
}

// LoadKey reads a private key written by Keygen (or by minisign -G -W).
func LoadKey(path string) (*Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return nil, fmt.Errorf("signing key %s is readable by every user; chmod o-r it first", path)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if minisign.IsEncrypted(text) {
		return nil, fmt.Errorf("signing key %s is password-protected; tpmd needs an unencrypted key (tpm keygen writes one)", path)
	}
	var k Key
	if err := k.priv.UnmarshalText(text); err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return &k, nil
}

// PublicKey returns the key's public half.
func (k *Key) PublicKey() PublicKey {
	return PublicKey{k.priv.Public().(minisign.PublicKey)}
}

// Sign returns a minisign signature of data. The trusted comment is signed
// with it (minisign prints it on verification); it must be one line. The
// message is pre-hashed (BLAKE2b-512), minisign's current default.
func (k *Key) Sign(data []byte, trustedComment string) ([]byte, error) {
	return k.SignReader(bytes.NewReader(data), trustedComment)
}

// SignReader is Sign of what data reads, read once, never held whole.
func (k *Key) SignReader(data io.Reader, trustedComment string) ([]byte, error) {
	if strings.ContainsAny(trustedComment, "\r\n") {
		return nil, errors.New("trusted comment must be a single line")
	}
	r := minisign.NewReader(data)
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, err
	}
	untrusted := "signature from tpm secret key " + strings.ToUpper(strconv.FormatUint(k.priv.ID(), 16))
	return r.SignWithComments(k.priv, trustedComment, untrusted), nil
}

// PublicKey is the repository's public key, as clients hold it.
type PublicKey struct {
	pub minisign.PublicKey
}

// LoadPublicKey reads a public key file (repo.pub, or minisign's).
func LoadPublicKey(path string) (PublicKey, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return PublicKey{}, fmt.Errorf("public key: %w", err)
	}
	p, err := ParsePublicKey(text)
	if err != nil {
		return PublicKey{}, fmt.Errorf("public key %s: %w", path, err)
	}
	return p, nil
}

// ParsePublicKey reads a public key in minisign's text format: the base64
// line, with or without its comment line.
func ParsePublicKey(text []byte) (PublicKey, error) {
	var p PublicKey
	if err := p.pub.UnmarshalText(bytes.TrimSpace(text)); err != nil {
		return PublicKey{}, err
	}
	return p, nil
}

// ID is the key's id as minisign prints it (upper-case hex).
func (p PublicKey) ID() string { return strings.ToUpper(strconv.FormatUint(p.pub.ID(), 16)) }

// String is the key's one-line base64 form (what minisign -P takes).
func (p PublicKey) String() string { return p.pub.String() }

// Verify checks sig over data: ErrBadSignature unless it verifies.
func (p PublicKey) Verify(data, sig []byte) error {
	if !minisign.Verify(p.pub, data, sig) {
		return ErrBadSignature
	}
	return nil
}

// TrustedComment returns the signed comment of a signature, without the
// "trusted comment: " prefix. Only trust it after Verify succeeded.
func TrustedComment(sig []byte) (string, error) {
	var s minisign.Signature
	if err := s.UnmarshalText(sig); err != nil {
		return "", fmt.Errorf("signature: %w", err)
	}
	return s.TrustedComment, nil
}
