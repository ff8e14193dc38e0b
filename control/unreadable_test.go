package control

import (
	"crypto/rand"
	"errors"
	"testing"

	"go.temporal.io/sdk/converter"

	"github.com/keelson-dev/keelson/codec"
)

func keyring(t *testing.T, id string) *codec.Keyring {
	t.Helper()
	k := codec.Key{ID: id, Secret: make([]byte, codec.KeySize)}
	if _, err := rand.Read(k.Secret); err != nil {
		t.Fatal(err)
	}
	r, err := codec.NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The errors of reading a payload encrypted for others are told apart
// from any other error, which still fails the DORA gathering.
func TestEncryptedForOthers(t *testing.T) {
	theirs := codec.NewDataConverter(keyring(t, "theirs"))
	p, err := theirs.ToPayload(map[string]string{"phase": "succeeded"})
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	for name, dc := range map[string]converter.DataConverter{
		"no keys":     converter.GetDefaultDataConverter(),
		"another key": codec.NewDataConverter(keyring(t, "ours")),
	} {
		err := dc.FromPayload(p, &v)
		if err == nil || !encryptedForOthers(err) {
			t.Errorf("%s: %v is not taken for a payload encrypted for others", name, err)
		}
	}
	if encryptedForOthers(errors.New("context deadline exceeded")) {
		t.Error("an ordinary error was taken for an encrypted payload")
	}
}
