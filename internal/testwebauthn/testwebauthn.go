// Package testwebauthn is a software authenticator for tests: it answers
// the options a relying party sends for navigator.credentials.create and
// .get the way a browser and a security key would, with an ES256 key,
// "none" attestation, and flags and a signature counter the test sets.
package testwebauthn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Flags of authenticator data (WebAuthn §6.1).
const (
	FlagUP = 0x01 // user present
	FlagUV = 0x04 // user verified
	FlagBE = 0x08 // backup eligible
	FlagBS = 0x10 // backed up
	flagAT = 0x40 // attested credential data included
)

// Authenticator holds one credential. Its fields may be changed between
// ceremonies to make the next response wrong in one way.
type Authenticator struct {
	Key    *ecdsa.PrivateKey
	CredID []byte
	AAGUID [16]byte
	// Counter is the signature counter: each Get adds one first, unless
	// it is 0 (an authenticator without a counter stays at 0).
	Counter uint32
	// Flags go into authenticator data; FlagUP is what a touch gives.
	Flags byte
	// Origin is what the "browser" puts in clientDataJSON.
	Origin string
	// RPID, when set, replaces the options' relying party ID in the hash
	// of authenticator data (a credential of another site).
	RPID string
	// UserHandle is the user handle registration stored (a resident
	// credential returns it with every assertion).
	UserHandle []byte
	Transports []string
}

// New returns an authenticator with a fresh key and credential ID, user
// presence and verification flags, a counter starting at 0 and the given
// origin.
func New(origin string) *Authenticator {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	id := make([]byte, 32)
	_, _ = rand.Read(id)
	return &Authenticator{Key: key, CredID: id, Flags: FlagUP | FlagUV, Origin: origin, Transports: []string{"usb"}}
}

var b64 = base64.RawURLEncoding

type options struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		RP        struct {
			ID string `json:"id"`
		} `json:"rp"`
		RPID string `json:"rpId"`
		User struct {
			ID string `json:"id"`
		} `json:"user"`
	} `json:"publicKey"`
}

func parse(raw []byte) (options, error) {
	var o options
	if err := json.Unmarshal(raw, &o); err != nil {
		return o, fmt.Errorf("testwebauthn: options: %w", err)
	}
	if o.PublicKey.Challenge == "" {
		return o, fmt.Errorf("testwebauthn: options have no challenge: %s", raw)
	}
	return o, nil
}

func (a *Authenticator) clientData(typ, challenge string) []byte {
	cd, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": a.Origin, "crossOrigin": false})
	return cd
}

func (a *Authenticator) authData(rpID string, flags byte, attested []byte) []byte {
	if a.RPID != "" {
		rpID = a.RPID
	}
	h := sha256.Sum256([]byte(rpID))
	out := append(h[:], flags)
	out = binary.BigEndian.AppendUint32(out, a.Counter)
	return append(out, attested...)
}

// Create answers creation options (JSON, as the relying party sent them)
// with a PublicKeyCredential as a browser posts it, in JSON.
func (a *Authenticator) Create(optionsJSON []byte) ([]byte, error) {
	o, err := parse(optionsJSON)
	if err != nil {
		return nil, err
	}
	if a.UserHandle, err = b64.DecodeString(o.PublicKey.User.ID); err != nil {
		return nil, fmt.Errorf("testwebauthn: user.id: %w", err)
	}
	x := a.Key.X.FillBytes(make([]byte, 32))
	y := a.Key.Y.FillBytes(make([]byte, 32))
	coseKey, err := cbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: x, -3: y})
	if err != nil {
		return nil, err
	}
	attested := append(a.AAGUID[:], byte(len(a.CredID)>>8), byte(len(a.CredID)))
	attested = append(append(attested, a.CredID...), coseKey...)
	authData := a.authData(o.PublicKey.RP.ID, a.Flags|flagAT, attested)
	attObj, err := cbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": authData})
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id": b64.EncodeToString(a.CredID), "rawId": b64.EncodeToString(a.CredID), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(a.clientData("webauthn.create", o.PublicKey.Challenge)),
			"attestationObject": b64.EncodeToString(attObj),
			"transports":        a.Transports,
		},
		"clientExtensionResults": map[string]any{},
	})
}

// Get answers request options with an assertion, in JSON, signed with the
// credential's key after moving the counter on.
func (a *Authenticator) Get(optionsJSON []byte) ([]byte, error) {
	o, err := parse(optionsJSON)
	if err != nil {
		return nil, err
	}
	if a.Counter != 0 {
		a.Counter++
	}
	authData := a.authData(o.PublicKey.RPID, a.Flags, nil)
	cd := a.clientData("webauthn.get", o.PublicKey.Challenge)
	h := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, authData...), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.Key, digest[:])
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id": b64.EncodeToString(a.CredID), "rawId": b64.EncodeToString(a.CredID), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(cd),
			"authenticatorData": b64.EncodeToString(authData),
			"signature":         b64.EncodeToString(sig),
			"userHandle":        b64.EncodeToString(a.UserHandle),
		},
		"clientExtensionResults": map[string]any{},
	})
}
