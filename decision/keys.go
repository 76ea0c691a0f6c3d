package decision

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/orgauthz/orgauthz/internal/confload"
)

// maxPEMBytes bounds a key file; an Ed25519 PEM is about 120 bytes.
const maxPEMBytes = 16 << 10

// GenerateKey writes a new Ed25519 key pair: the private key as a PKCS#8 PEM file readable only by its
// owner (0600), the public key as a PKIX PEM file (0644), the formats of `openssl genpkey -algorithm
// ed25519` and `openssl pkey -pubout`. It refuses to overwrite either file.
func GenerateKey(privPath, pubPath string) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("decision: generate key: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("decision: generate key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("decision: generate key: %w", err)
	}
	if _, err := os.Lstat(pubPath); err == nil {
		return fmt.Errorf("decision: generate key: %s exists, not overwriting it", pubPath)
	}
	if err := writeNew(privPath, 0o600, &pem.Block{Type: "PRIVATE KEY", Bytes: privDER}); err != nil {
		return err
	}
	if err := writeNew(pubPath, 0o644, &pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}); err != nil {
		os.Remove(privPath) // leave no half pair behind
		return err
	}
	return nil
}

// writeNew creates path, which must not exist, with mode perm and the PEM block b.
func writeNew(path string, perm os.FileMode, b *pem.Block) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("decision: write key: %w", err)
	}
	if err := pem.Encode(f, b); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("decision: write key: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("decision: write key: %w", err)
	}
	return nil
}

// readPEM returns the only PEM block of the file at path, which must have type typ.
func readPEM(path, typ string) ([]byte, error) {
	raw, err := confload.ReadFile(path, maxPEMBytes)
	if err != nil {
		return nil, fmt.Errorf("decision: read key: %w", err)
	}
	b, rest := pem.Decode(raw)
	if b == nil {
		return nil, fmt.Errorf("decision: read key %s: no PEM block", path)
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, fmt.Errorf("decision: read key %s: more than one PEM block", path)
	}
	if b.Type != typ {
		return nil, fmt.Errorf("decision: read key %s: PEM type %q, want %q", path, b.Type, typ)
	}
	return b.Bytes, nil
}

func readPrivateKey(path string) (ed25519.PrivateKey, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("decision: read key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("decision: read key %s: %T is not an Ed25519 key", path, k)
	}
	return ek, nil
}

func readPublicKey(path string) (ed25519.PublicKey, error) {
	der, err := readPEM(path, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("decision: read key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("decision: read key %s: %T is not an Ed25519 key", path, k)
	}
	return ek, nil
}
