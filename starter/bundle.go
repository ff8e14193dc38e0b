package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keelson-dev/keelson/activities/artifacts"
	"github.com/keelson-dev/keelson/bundle"
	"github.com/keelson-dev/keelson/release"
)

// packed is a release file made hermetic: the bundle's digest, the spec
// whose paths name the bundle's folders, and a listing for --dry-run.
type packed struct {
	Digest   string
	Spec     *release.Spec
	Describe string
}

// packSpec packs what spec names on disk into a bundle and, unless dry,
// uploads it to the store: once it returns, nothing on this machine's disk
// matters to the release any more.
func packSpec(ctx context.Context, spec *release.Spec, store string, dry bool) (*packed, error) {
	b, bundled, err := bundle.ForSpec(spec)
	if err != nil {
		return nil, err
	}
	out := &packed{Digest: b.Digest, Spec: bundled, Describe: bundle.Describe(b)}
	if dry {
		return out, nil
	}
	s, err := artifacts.OpenLocation(ctx, store)
	if err != nil {
		return nil, fmt.Errorf("--artifacts: %w", err)
	}
	if err := bundle.Upload(ctx, s, b); err != nil {
		return nil, fmt.Errorf("upload bundle %s to %s: %w", b.Digest, artifacts.Describe(s), err)
	}
	return out, nil
}

// defaultArtifacts is the worker's default store (worker/config.go), so
// that a CLI and a worker on one machine meet without configuration.
func defaultArtifacts(getenv func(string) string) string {
	dataHome := getenv("XDG_DATA_HOME")
	if dataHome == "" {
		home := getenv("HOME")
		if home == "" {
			home, _ = os.UserHomeDir()
		}
		dataHome = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(dataHome, "keelson", "artifacts")
}
