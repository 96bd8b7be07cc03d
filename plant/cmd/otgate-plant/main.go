// Command otgate-plant runs the demo plant: a simulated tank served over
// Modbus/TCP (see package plant for the register map).
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/otgate/otgate/plant"
)

func main() {
	listen := flag.String("listen", ":502", "address to serve Modbus/TCP on")
	unit := flag.Uint("unit", 1, "unit id to answer (1-255)")
	verbose := flag.Bool("v", false, "log connection events")
	flag.Parse()
	if *unit < 1 || *unit > 255 {
		fmt.Fprintf(os.Stderr, "otgate-plant: -unit %d out of range 1..255\n", *unit)
		os.Exit(2)
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "otgate-plant: %v\n", err)
		os.Exit(1)
	}
	srv := &plant.Server{Tank: plant.NewTank(nil), Unit: uint8(*unit)}
	logger := log.New(os.Stderr, "", log.LstdFlags)
	if *verbose {
		srv.Log = logger
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		logger.Printf("otgate-plant: %v, stopping", s)
		l.Close()
	}()
	logger.Printf("otgate-plant: unit %d listening on %s", *unit, l.Addr())
	if err := srv.Serve(l); err != nil {
		logger.Printf("otgate-plant: %v", err)
		os.Exit(1)
	}
}
