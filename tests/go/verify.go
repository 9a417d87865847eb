// A verifier of the server's audit output written with code we did not write: Go's
// golang.org/x/mod/sumdb/note (signed notes) and golang.org/x/mod/sumdb/tlog (RFC 6962
// hashing and inclusion proofs), as Debian packages them (golang-golang-x-mod-dev).
//
//	verify checkpoint VERIFIER_KEY < checkpoint.note
//	verify receipt VERIFIER_KEY EVENT_HASH_HEX < receipt.tlog-proof
//
// Prints what it verified and exits 0, or prints why not and exits 1.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func fail(format string, args ...any) {
	fmt.Printf("FAIL: "+format+"\n", args...)
	os.Exit(1)
}

// open verifies a signed checkpoint note and returns its origin, size and root.
func open(text []byte, key string) (string, int64, tlog.Hash) {
	verifier, err := note.NewVerifier(key)
	if err != nil {
		fail("verifier key: %v", err)
	}
	n, err := note.Open(text, note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint note: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[len(lines)-1] != "" {
		fail("checkpoint body has %d lines", len(lines))
	}
	if lines[0] != verifier.Name() {
		fail("origin %q is not the key's name %q", lines[0], verifier.Name())
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		fail("tree size %q", lines[1])
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != tlog.HashSize {
		fail("root %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], raw)
	return lines[0], size, root
}

func main() {
	if len(os.Args) < 3 {
		fail("usage: verify checkpoint KEY | verify receipt KEY EVENT_HASH_HEX (input on stdin)")
	}
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	switch os.Args[1] {
	case "checkpoint":
		origin, size, root := open(input, os.Args[2])
		fmt.Printf("OK checkpoint %s %d %s\n", origin, size, base64.StdEncoding.EncodeToString(root[:]))
	case "receipt":
		if len(os.Args) != 4 {
			fail("receipt needs the event hash")
		}
		eventHash, err := hex.DecodeString(os.Args[3])
		if err != nil {
			fail("event hash: %v", err)
		}
		head, checkpoint, found := strings.Cut(string(input), "\n\n")
		if !found {
			fail("receipt has no checkpoint")
		}
		scanner := bufio.NewScanner(strings.NewReader(head))
		scanner.Scan()
		if scanner.Text() != "c2sp.org/tlog-proof@v1" {
			fail("not a c2sp.org/tlog-proof@v1 receipt")
		}
		scanner.Scan()
		line := scanner.Text()
		if strings.HasPrefix(line, "extra ") {
			scanner.Scan()
			line = scanner.Text()
		}
		index, err := strconv.ParseInt(strings.TrimPrefix(line, "index "), 10, 64)
		if err != nil || !strings.HasPrefix(line, "index ") {
			fail("index line %q", line)
		}
		var proof tlog.RecordProof
		for scanner.Scan() {
			raw, err := base64.StdEncoding.DecodeString(scanner.Text())
			if err != nil || len(raw) != tlog.HashSize {
				fail("proof hash %q", scanner.Text())
			}
			var h tlog.Hash
			copy(h[:], raw)
			proof = append(proof, h)
		}
		origin, size, root := open([]byte(checkpoint), os.Args[2])
		if err := tlog.CheckRecord(proof, size, root, index, tlog.RecordHash(eventHash)); err != nil {
			fail("inclusion of record %d in %s at size %d: %v", index, origin, size, err)
		}
		fmt.Printf("OK receipt %s %d in %d\n", origin, index, size)
	default:
		fail("unknown command %q", os.Args[1])
	}
}
