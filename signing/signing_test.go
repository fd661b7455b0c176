package signing

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeygenSignVerify(t *testing.T) {
	dir := t.TempDir()
	keyPath, pubPath, err := Keygen(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{keyPath: 0o600, pubPath: 0o644} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	if _, _, err := Keygen(dir, false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second Keygen: %v, want a refusal that mentions --force", err)
	}

	key, err := LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if pub.String() != key.PublicKey().String() {
		t.Error("repo.pub is not the public half of repo.key")
	}

	data := []byte("the index")
	sig, err := key.Sign(data, "timestamp:1\tgeneration:3")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Verify(data, sig); err != nil {
		t.Fatal(err)
	}
	if c, err := TrustedComment(sig); err != nil || c != "timestamp:1\tgeneration:3" {
		t.Errorf("TrustedComment = %q, %v", c, err)
	}
	for i := range data {
		bad := []byte(string(data))
		bad[i] ^= 1
		if err := pub.Verify(bad, sig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("changed byte %d: Verify = %v", i, err)
		}
	}

	// A key pair from a second Keygen does not verify the first's signature.
	_, otherPub, err := Keygen(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := LoadPublicKey(otherPub)
	if err := other.Verify(data, sig); err == nil {
		t.Error("another key verified the signature")
	}

	if _, err := key.Sign(data, "two\nlines"); err == nil {
		t.Error("a two-line trusted comment was accepted")
	}
}

func TestLoadKeyRefusesWorldReadable(t *testing.T) {
	dir := t.TempDir()
	keyPath, _, err := Keygen(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(keyPath, 0o644)
	if _, err := LoadKey(keyPath); err == nil || !strings.Contains(err.Error(), "chmod") {
		t.Errorf("LoadKey of a 0644 key: %v", err)
	}
	if _, err := LoadKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("LoadKey of a missing file succeeded")
	}
	if _, err := LoadPublicKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("LoadPublicKey of a missing file succeeded")
	}
	if _, err := ParsePublicKey([]byte("garbage")); err == nil {
		t.Error("ParsePublicKey of garbage succeeded")
	}
}

// Debian's minisign verifies what tpm signs, and refuses it after one
// changed byte.
func TestMinisignToolVerifies(t *testing.T) {
	if _, err := exec.LookPath("minisign"); err != nil {
		t.Skip("minisign is not installed (apt-get install minisign); skipping the cross-check")
	}
	dir := t.TempDir()
	keyPath, pubPath, err := Keygen(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := LoadKey(keyPath)
	data := []byte(strings.Repeat("index bytes\n", 1000))
	sig, err := key.Sign(data, "timestamp:1700000000\tfile:index.db\tgeneration:1")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "index.db")
	os.WriteFile(file, data, 0o644)
	os.WriteFile(file+".sig", sig, 0o644)
	out, err := exec.Command("minisign", "-V", "-p", pubPath, "-m", file, "-x", file+".sig").CombinedOutput()
	if err != nil {
		t.Fatalf("minisign -V: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "generation:1") {
		t.Errorf("minisign did not print the trusted comment:\n%s", out)
	}
	data[100] ^= 1
	os.WriteFile(file, data, 0o644)
	if out, err := exec.Command("minisign", "-V", "-p", pubPath, "-m", file, "-x", file+".sig").CombinedOutput(); err == nil {
		t.Errorf("minisign verified a changed file:\n%s", out)
	}
}
