package faults

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/money"
	"github.com/ecmstore/ecmstore/shared/orders"
)

// Command kinds of the workload.
const (
	CmdOpen     = "open"
	CmdDeposit  = "deposit"
	CmdWithdraw = "withdraw"
	CmdStock    = "stock"
	CmdPlace    = "place"
)

// Answer is one HTTP answer the server produced for a command.
type Answer struct {
	Status   int
	Code     string // error code of an error body
	Version  string // x-ecm-version
	Body     string
	Lost     bool // produced but never reached the client (transport failure, crash)
	Replayed bool // Idempotent-Replayed: true
}

func (a Answer) String() string {
	s := fmt.Sprintf("%d v=%s %s", a.Status, a.Version, strings.TrimSpace(a.Body))
	if a.Lost {
		s += " [lost]"
	}
	if a.Replayed {
		s += " [replayed]"
	}
	return s
}

// Command is one client command and everything it was answered.
type Command struct {
	Seq         int
	Kind        string
	Target      string // aggregate id
	Amount      money.Amount
	Quantity    int
	Account     string        // place: the paying account
	Items       []orders.Item // place
	Key         string        // Idempotency-Key ("" = none)
	Correlation string        // X-Correlation-Id, unique per command: finds its events
	IfMatch     bool          // sent with If-Match (a versioned command)
	Answers     []Answer      // every answer, lost or not, in order
	Final       *Answer       // the acknowledged answer; nil when the client gave up
	GaveUp      bool          // every try failed (5xx, lost, in progress)
	Concurrent  bool          // sent while other commands raced on the same aggregate
}

func (c *Command) String() string {
	s := fmt.Sprintf("command #%d %s %s", c.Seq, c.Kind, c.Target)
	if c.Key != "" {
		s += " key=" + c.Key
	} else {
		s += " (no key)"
	}
	if c.IfMatch {
		s += " If-Match"
	}
	return s + " correlation=" + c.Correlation
}

func (c *Command) acked2xx() bool {
	return c.Final != nil && c.Final.Status >= 200 && c.Final.Status < 300
}

// History is what the checker reads after quiescence.
type History struct {
	// Events is every stream the workload touched, read from the raw store (no faults,
	// no upcasting).
	Events   map[eventstore.Stream][]event.Event
	Commands []*Command
	Accounts []string
	Products []string
	Orders   []string
	// Replayed states (GET ?consistent=true) and read models (GET) by path.
	Replay    map[string]json.RawMessage
	ReadModel map[string]json.RawMessage
	// DeadLetters left parked after settling.
	DeadLetters []string
}

// Violation is one broken invariant with its evidence.
type Violation struct {
	Invariant string
	Detail    string
}

func (v Violation) String() string { return v.Invariant + ": " + v.Detail }

// Invariants checked (Violation.Invariant).
const (
	InvDuplicateEventID   = "duplicate-event-id"
	InvAppliedTwice       = "applied-twice"
	InvLostAcknowledged   = "lost-acknowledged"
	InvRejectedButApplied = "rejected-but-applied"
	InvRetryAnswer        = "retry-answer-differs"
	InvUnversioned409     = "unversioned-409"
	InvBalance            = "balance"
	InvDoublePayment      = "double-payment"
	InvDoubleRefund       = "double-refund"
	InvPaymentState       = "payment-without-order-state"
	InvUnsettled          = "order-unsettled"
	InvDoubleReserve      = "double-reserve"
	InvReservedStock      = "reserved-stock"
	InvReadModel          = "read-model"
	InvParked             = "parked-after-settle"
	InvGaveUp             = "client-gave-up"
	InvSettle             = "settle-failed"
)

func ownType(kind string) string {
	switch kind {
	case CmdOpen:
		return bank.AccountOpened
	case CmdDeposit:
		return bank.MoneyDeposited
	case CmdWithdraw:
		return bank.MoneyWithdrawn
	case CmdStock:
		return orders.StockAdded
	case CmdPlace:
		return orders.Placed
	}
	return ""
}

func streamOf(kind, id string) eventstore.Stream {
	switch kind {
	case CmdStock:
		return eventstore.Stream{Type: orders.ProductType, ID: id}
	case CmdPlace:
		return eventstore.Stream{Type: orders.AggregateType, ID: id}
	}
	return eventstore.Stream{Type: bank.AggregateType, ID: id}
}

func describe(e event.Event) string {
	return fmt.Sprintf("%s v%d %s id=%s corr=%s actor=%s cause=%s payload=%s", e.AggregateID, e.Version, e.EventType,
		e.EventID, e.Metadata.CorrelationID, e.Metadata.Actor, e.Metadata.CausationID, string(e.Payload))
}

// Check returns every invariant the history breaks, in a stable order.
func Check(h *History) []Violation {
	var vs []Violation
	add := func(inv, format string, args ...any) {
		vs = append(vs, Violation{Invariant: inv, Detail: fmt.Sprintf(format, args...)})
	}
	streams := make([]eventstore.Stream, 0, len(h.Events))
	for s := range h.Events {
		streams = append(streams, s)
	}
	sort.Slice(streams, func(i, j int) bool { return streams[i].Key() < streams[j].Key() })

	// No event id twice anywhere.
	where := map[string]event.Event{}
	for _, s := range streams {
		for _, e := range h.Events[s] {
			if prev, ok := where[e.EventID]; ok {
				add(InvDuplicateEventID, "event id %s stored twice: [%s] and [%s]", e.EventID, describe(prev), describe(e))
				continue
			}
			where[e.EventID] = e
		}
	}

	// Every command's own events: at most once, exactly once when acknowledged.
	applied := map[*Command]int{}
	for _, c := range h.Commands {
		st := streamOf(c.Kind, c.Target)
		var own []event.Event
		for _, e := range h.Events[st] {
			if e.Metadata.CorrelationID == c.Correlation && e.Metadata.Actor != orders.Actor && e.EventType == ownType(c.Kind) {
				own = append(own, e)
			}
		}
		applied[c] = len(own)
		switch {
		case len(own) > 1:
			var ev []string
			for _, e := range own {
				ev = append(ev, "["+describe(e)+"]")
			}
			add(InvAppliedTwice, "%s took effect %d times: %s; answers: %s", c, len(own), strings.Join(ev, " "), answers(c))
		case len(own) == 0 && c.acked2xx():
			add(InvLostAcknowledged, "%s acknowledged %s but no %s event with its correlation id is stored", c, c.Final, ownType(c.Kind))
		case len(own) == 1 && c.Key != "" && c.Final != nil && c.Final.Status >= 400 && c.Final.Status < 500:
			add(InvRejectedButApplied, "%s was answered %s yet took effect: [%s]", c, c.Final, describe(own[0]))
		}
		if c.GaveUp {
			add(InvGaveUp, "%s: no try of %d got an answer to keep: %s", c, len(c.Answers), answers(c))
		}
		if c.Key != "" {
			var first *Answer
			for i := range c.Answers {
				a := &c.Answers[i]
				if a.Status >= 500 || a.Code == "request_in_progress" {
					continue
				}
				if first == nil {
					first = a
					continue
				}
				if a.Status != first.Status || a.Version != first.Version || a.Body != first.Body {
					add(InvRetryAnswer, "%s: first answered %s, a retry with the same key answered %s", c, first, a)
					break
				}
			}
		}
		if !c.IfMatch {
			for _, a := range c.Answers {
				// already_exists (a create of something that exists) is a rule, not contention.
				if a.Status == 409 && a.Code == "version_conflict" {
					add(InvUnversioned409, "%s sent no expected version but was answered %s%s", c, a, map[bool]string{
						true: " (in the contention phase: timing decides, rerun the seed a few times)"}[c.Concurrent])
					break
				}
			}
		}
	}

	// Orders: the saga's payments, refunds and reservations, once each.
	orderState := map[string]orders.Order{}
	for _, id := range h.Orders {
		var o orders.Order
		if raw, ok := h.Replay["/orders/"+id]; ok {
			_ = json.Unmarshal(raw, &o)
		}
		orderState[id] = o
	}
	payments, refunds := map[string][]event.Event{}, map[string][]event.Event{}
	for _, s := range streams {
		if s.Type != bank.AggregateType {
			continue
		}
		for _, e := range h.Events[s] {
			if e.Metadata.Actor != orders.Actor {
				continue
			}
			var m bank.Movement
			if err := e.Decode(&m); err != nil || m.Reference == "" {
				continue
			}
			switch e.EventType {
			case bank.MoneyWithdrawn:
				payments[m.Reference] = append(payments[m.Reference], e)
			case bank.MoneyDeposited:
				refunds[m.Reference] = append(refunds[m.Reference], e)
			}
		}
	}
	paidEvents := map[string]bool{}
	for _, id := range h.Orders {
		for _, e := range h.Events[eventstore.Stream{Type: orders.AggregateType, ID: id}] {
			if e.EventType == orders.Paid {
				paidEvents[id] = true
			}
		}
	}
	for _, id := range h.Orders {
		o := orderState[id]
		if len(h.Events[eventstore.Stream{Type: orders.AggregateType, ID: id}]) == 0 {
			continue // never placed
		}
		if len(payments[id]) > 1 {
			add(InvDoublePayment, "order %s paid %d times: %s", id, len(payments[id]), list(payments[id]))
		}
		if len(refunds[id]) > 1 {
			add(InvDoubleRefund, "order %s refunded %d times: %s", id, len(refunds[id]), list(refunds[id]))
		}
		if o.Status != orders.StatusConfirmed && o.Status != orders.StatusCancelled && o.Status != orders.StatusShipped {
			add(InvUnsettled, "order %s is %q after settling (saga did not finish)", id, o.Status)
		}
		paid, refunded := len(payments[id]) > 0, len(refunds[id]) > 0
		evidence := fmt.Sprintf("order %s is %s %s; payments: %s; refunds: %s; order events: %s", id, o.Status, o.Reason,
			orNone(list(payments[id])), orNone(list(refunds[id])),
			list(h.Events[eventstore.Stream{Type: orders.AggregateType, ID: id}]))
		switch {
		case paid != paidEvents[id]:
			add(InvPaymentState, "payment withdrawn=%v but OrderPaid stored=%v: %s", paid, paidEvents[id], evidence)
		case o.Status == orders.StatusConfirmed && refunded:
			add(InvPaymentState, "confirmed and refunded: %s", evidence)
		case o.Status == orders.StatusCancelled && paid && !refunded:
			add(InvPaymentState, "cancelled after payment without a refund: %s", evidence)
		case refunded && !paid:
			add(InvPaymentState, "refunded without a payment: %s", evidence)
		}
	}

	// Balances: the fold of what was acknowledged (and what took effect unacknowledged,
	// once) plus the saga's payments and refunds.
	expected := map[string]money.Amount{}
	for _, c := range h.Commands {
		if applied[c] == 0 && !c.acked2xx() {
			continue
		}
		switch c.Kind {
		case CmdOpen, CmdDeposit:
			expected[c.Target] += c.Amount
		case CmdWithdraw:
			expected[c.Target] -= c.Amount
		}
	}
	for _, id := range h.Orders {
		for _, e := range payments[id][:min(1, len(payments[id]))] {
			var m bank.Movement
			_ = e.Decode(&m)
			expected[e.AggregateID] -= m.Amount
		}
		for _, e := range refunds[id][:min(1, len(refunds[id]))] {
			var m bank.Movement
			_ = e.Decode(&m)
			expected[e.AggregateID] += m.Amount
		}
	}
	for _, id := range h.Accounts {
		var a bank.Account
		raw, ok := h.Replay["/accounts/"+id]
		if !ok {
			continue
		}
		if err := json.Unmarshal(raw, &a); err != nil {
			add(InvBalance, "account %s: replay unreadable: %s", id, raw)
			continue
		}
		if a.Balance != expected[id] {
			add(InvBalance, "account %s: balance %s, expected %s from the acknowledged commands and the saga's movements",
				id, a.Balance, expected[id])
		}
	}

	// Products: reserved stock is what the confirmed orders hold, each reservation once.
	want := map[string]int{}
	for _, id := range h.Orders {
		if o := orderState[id]; o.Status == orders.StatusConfirmed || o.Status == orders.StatusShipped {
			for _, it := range o.Items {
				want[it.ProductID] += it.Quantity
			}
		}
	}
	for _, pid := range h.Products {
		net := map[string]int{}
		var evs []event.Event
		for _, e := range h.Events[eventstore.Stream{Type: orders.ProductType, ID: pid}] {
			var p orders.StockPayload
			_ = e.Decode(&p)
			switch e.EventType {
			case orders.StockReserved:
				net[p.OrderID]++
				evs = append(evs, e)
				if net[p.OrderID] > 1 {
					add(InvDoubleReserve, "product %s reserved twice for order %s: %s", pid, p.OrderID, list(evs))
				}
			case orders.StockReleased:
				net[p.OrderID] = 0
				evs = append(evs, e)
			}
		}
		var got struct {
			Reserved int `json:"reserved"`
		}
		if raw, ok := h.Replay["/products/"+pid]; ok {
			_ = json.Unmarshal(raw, &got)
			if got.Reserved != want[pid] {
				var status []string
				for _, id := range h.Orders {
					if o, ok := orderState[id]; ok && o.Status != "" {
						status = append(status, id+"="+o.Status)
					}
				}
				add(InvReservedStock, "product %s: reserved %d, the confirmed orders hold %d; orders: %s; reservations: %s",
					pid, got.Reserved, want[pid], strings.Join(status, " "), orNone(list(evs)))
			}
		}
	}

	// Read models equal a fresh replay.
	paths := make([]string, 0, len(h.Replay))
	for p := range h.Replay {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		rm, ok := h.ReadModel[p]
		if !ok {
			continue
		}
		var a, b any
		if json.Unmarshal(h.Replay[p], &a) != nil || json.Unmarshal(rm, &b) != nil || !reflect.DeepEqual(a, b) {
			add(InvReadModel, "GET %s answered %s, a replay %s", p, strings.TrimSpace(string(rm)), strings.TrimSpace(string(h.Replay[p])))
		}
	}
	for _, d := range h.DeadLetters {
		add(InvParked, "still parked after settling: %s", d)
	}
	return vs
}

func answers(c *Command) string {
	var s []string
	for _, a := range c.Answers {
		s = append(s, a.String())
	}
	return "[" + strings.Join(s, " | ") + "]"
}

func list(evs []event.Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, "["+describe(e)+"]")
	}
	return strings.Join(s, " ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
