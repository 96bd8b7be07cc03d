// Package modbus inspects Modbus/TCP traffic between a client and a device.
//
// It has four layers, each usable on its own:
//
//   - a parser for both directions (Request.Parse, Response.Parse,
//     Response.Match) that validates the MBAP header and every public
//     function code against the Modbus Application Protocol specification
//     v1.1b3 and decodes them without allocating;
//   - grant rules (Rules, with yaml tags and Validate) compiled into a
//     Policy whose Judge allows a request or denies it with the exception a
//     device would answer and a reason naming the rule; a gateway's grant
//     may give one block of Rules per unit (CompileBlocks), and Judge
//     picks the block by the request's unit id (a table lookup) and names
//     it ("plc-gw units 2") in the reason and the record;
//   - a Session that sits in a relay: requests from the client are read
//     whole, judged, then forwarded or answered locally with an exception;
//     a request framed correctly whose values the specification forbids
//     (ErrIllegalRequest: 126 registers, a byte count not the quantity's)
//     is answered as a device answers it (03, or 02 for a span past the
//     address space) and never forwarded, while a malformed or oversized
//     frame ends the session;
//     responses from the device are forwarded as their bytes arrive
//     (cut-through) while a follower matches them to pipelined requests by
//     transaction id;
//   - Records: one decoded transaction each (times, unit, function, table,
//     addresses, values, outcome), handed to a Sink and rendered by
//     Record.AppendText as "14:03:04.120 alice plc-7 unit 1 write holding
//     52 = 55 -> ok (1.2 ms)". A request that may change the device's
//     state (RecordedBeforeForwarding: writes, state-changing
//     diagnostics, unknown codes) is also handed to the Sink before its
//     bytes are forwarded, as OutcomeForwarded; if the Sink fails, it is
//     not forwarded and the session ends (fail closed). PairKey pairs it
//     with the transaction's record for a viewer.
//
// Relay ties a Session to two connections for the proxy.
package modbus
