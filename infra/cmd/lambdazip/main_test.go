package main

import (
	"archive/zip"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content []byte
	}{
		{"empty", nil},
		{"binary", bytes.Repeat([]byte{0x7f, 'E', 'L', 'F', 0, 1, 2}, 10000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			if err := os.WriteFile(bin, tc.content, 0o644); err != nil {
				t.Fatal(err)
			}
			var zips [][]byte
			for _, out := range []string{"a.zip", "b.zip"} {
				if err := write(filepath.Join(dir, out), bin); err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(filepath.Join(dir, out))
				if err != nil {
					t.Fatal(err)
				}
				zips = append(zips, b)
			}
			if !bytes.Equal(zips[0], zips[1]) {
				t.Error("two zips of the same binary differ")
			}
			zr, err := zip.NewReader(bytes.NewReader(zips[0]), int64(len(zips[0])))
			if err != nil {
				t.Fatal(err)
			}
			if len(zr.File) != 1 || zr.File[0].Name != "bootstrap" {
				t.Fatalf("entries %v, want only bootstrap", zr.File)
			}
			f := zr.File[0]
			if f.Mode().Perm() != 0o755 || f.Modified.Year() != 1980 {
				t.Errorf("mode %v, modified %v", f.Mode(), f.Modified)
			}
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got, _ := io.ReadAll(rc)
			if !bytes.Equal(got, tc.content) {
				t.Error("content differs")
			}
		})
	}
	if err := write(filepath.Join(t.TempDir(), "x.zip"), "/does/not/exist"); err == nil {
		t.Error("no error for a missing binary")
	}
}
