package modbus

import (
	"context"
	"errors"
	"io"
	"net"
	"time"
)

// DrainTimeout bounds how long Relay keeps reading the device after the
// client has closed its side (or sent a frame that ends the session) while
// responses are still outstanding.
const DrainTimeout = 2 * time.Second

type closeWriter interface{ CloseWrite() error }

// Relay inspects one session between client and device until either side
// ends, ctx is cancelled, or the inspector ends it. It closes both
// connections and returns why the session ended: nil for a normal close,
// a *RecordError when cfg.Sink failed to keep a record (a request whose
// record before forwarding failed was not forwarded), an *EndError for a
// malformed or oversized frame, ctx.Err(), or the I/O error. Every
// transaction has been handed to cfg.Sink when it returns.
func Relay(ctx context.Context, cfg Config, client, device io.ReadWriteCloser) error {
	s, err := NewSession(cfg, client, device)
	if err != nil {
		client.Close()
		device.Close()
		return err
	}
	var reqErr, respErr, ctxErr error
	reqDone, respDone := make(chan struct{}), make(chan struct{})
	go func() { reqErr = s.Requests(client); close(reqDone) }()
	go func() { respErr = s.Responses(device); close(respDone) }()

	select {
	case <-reqDone:
		var end *EndError
		if reqErr == nil || errors.As(reqErr, &end) {
			// The client closed, or sent a frame that ends the session:
			// let the responses to requests already forwarded reach it.
			if cw, ok := device.(closeWriter); ok {
				cw.CloseWrite()
			}
			t := time.NewTimer(DrainTimeout)
		drain:
			for s.Outstanding() > 0 {
				select {
				case <-s.idle:
				case <-respDone:
					break drain
				case <-t.C:
					break drain
				case <-ctx.Done():
					ctxErr = ctx.Err()
					break drain
				}
			}
			t.Stop()
		}
	case <-respDone:
	case <-ctx.Done():
		ctxErr = ctx.Err()
	}
	client.Close()
	device.Close()
	<-reqDone
	<-respDone
	finErr := s.Finish()

	var rec *RecordError
	var end *EndError
	switch {
	case errors.As(reqErr, &rec), errors.As(respErr, &rec):
		return rec
	case errors.As(reqErr, &end), errors.As(respErr, &end):
		return end
	case ctxErr != nil:
		return ctxErr
	case !isClosedError(reqErr):
		return reqErr
	case !isClosedError(respErr):
		return respErr
	}
	return finErr
}

func isClosedError(err error) bool {
	return err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}
