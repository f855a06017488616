// Command ferretdb-launcher runs an embedded FerretDB v1 (SQLite backend) on a
// loopback port for the test suite. Building FerretDB's own command with
// `go install` panics at start because its version file is generated inside
// FerretDB's repository; embedding the package avoids that check.
//
// Usage: ferretdb-launcher -dir DIR [-listen 127.0.0.1:0]
// It prints the MongoDB URI as its first line on stdout and serves until
// SIGINT/SIGTERM or until its standard input is closed (so it never outlives
// the test process that started it).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	dir := flag.String("dir", "", "existing directory for the SQLite data files")
	listen := flag.String("listen", "127.0.0.1:0", "TCP address to listen on")
	watchStdin := flag.Bool("watch-stdin", true, "exit when standard input is closed")
	flag.Parse()
	if *dir == "" {
		log.Fatal("-dir is required")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
	})
	if err != nil {
		log.Fatal(err)
	}

	if *watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop()
		}()
	}

	done := make(chan struct{})
	go func() {
		f.Run(ctx)
		close(done)
	}()

	// Print the URI only once the listener accepts connections, so a client
	// that reads this line can connect at once.
	uri := f.MongoDBURI()
	u, err := url.Parse(uri)
	if err != nil {
		log.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", u.Host, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			log.Fatalf("FerretDB did not start listening on %s: %v", u.Host, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Println(uri)
	<-done
}
