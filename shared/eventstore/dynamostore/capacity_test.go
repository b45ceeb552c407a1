package dynamostore

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/money"
	"github.com/ecmstore/ecmstore/shared/orders"
	"github.com/ecmstore/ecmstore/shared/tasks"
	"github.com/ecmstore/ecmstore/shared/usercontext"
)

// The capacity model drives the store's own key-building code (the events table's
// items and id guards, the stream-fed index, the read-model documents) with a synthetic
// workload and turns what it wrote into rates per partition key: the numbers a team
// needs before it points traffic at the tables. `make capacity` prints it; the README
// carries the table.

var capacityRates = flag.String("capacity.rates", "10000,100000", "commands per second to model")

// Per-partition limits DynamoDB enforces, and on-demand prices (us-east-1, per million
// request units) the monthly figure uses.
const (
	partitionWCU   = 1000.0
	partitionRCU   = 3000.0
	pricePerMWRU   = 0.625
	pricePerMRRU   = 0.125
	secondsMonth   = 30 * 24 * 3600
	streamBatch    = 100 // projector and indexer batch size (template.yaml)
	modelCommands  = 100_000
	accounts       = 1_000_000
	customers      = 100_000
	products       = 10_000
	projects       = 1_000
	users          = 1_000_000
	keyedShare     = 0.5 // commands sent with an Idempotency-Key
	snapshotEvery  = 50
	itemsPerOrder  = 2
	indexShardsFor = DefaultIndexShards // the model names what a rate needs
)

// write is one item written: its table, partition key and write units.
type write struct {
	table, pk string
	wcu       float64
	command   bool // on the command path (what a client waits for)
	// ownRate: the key takes writes of one aggregate only (its stream, its read model, its
	// projection guard), so its rate is that aggregate's own, which no design can split.
	ownRate bool
}

// capacityRun accumulates the writes of a simulated run.
type capacityRun struct {
	writes   []write
	listed   map[string]bool // documents created so far (a listing index entry is written once)
	dims     map[string]int  // events per index dimension value, for the shard count a rate needs
	events   int
	commands int
	cmdWCU   float64 // write units on the command path
	cmdItems int     // events written on the command path
}

func units(bytes int) float64 { return math.Ceil(float64(bytes) / 1024) }

// stamp fills what the store would and returns the event as stored.
func stored(st eventstore.Stream, v int64, e event.Event, corr string) event.Event {
	e.AggregateType, e.AggregateID, e.Version = st.Type, st.ID, v
	e.EventID, e.Timestamp = event.NewID(), time.Date(2026, 11, 30, 14, 0, 0, 0, time.UTC)
	e.Metadata = event.Metadata{Actor: "user-123456", Source: "api", CorrelationID: corr, CausationID: event.NewID()}
	return e
}

// scheme is the key-building code the model drives: the store's own functions.
type scheme struct {
	eventPK  func(st eventstore.Stream) string
	guardPK  func(id string) string
	indexPKs func(e event.Event) []string  // the stream-fed index's items for one event
	docPK    func(coll, key string) string // a read-model document's partition key
	listPK   func(coll, key string) string // its listing index key, "" when not listed
	tables   struct{ events, index, docs, list string }
}

func (c *capacityRun) put(w write) {
	c.writes = append(c.writes, w)
	if w.command {
		c.cmdWCU += w.wcu
	}
}

// appendEvent records an append of e: the event item (and its id guard in one
// transaction when the ids are the caller's), the index items the indexer writes, and
// the projector's read-model write with its guard.
func (c *capacityRun) appendEvent(s scheme, e event.Event, guarded, command bool, docs ...[2]string) {
	c.events++
	u := units(ItemSize(e))
	own := s.eventPK(eventstore.StreamOf(e))
	if guarded {
		c.put(write{table: s.tables.events, pk: own, wcu: 2 * u, command: command, ownRate: true})
		c.put(write{table: s.tables.events, pk: s.guardPK(e.EventID), wcu: 2, command: command})
	} else {
		c.put(write{table: s.tables.events, pk: own, wcu: u, command: command, ownRate: true})
	}
	if command {
		c.cmdItems++
	}
	if e.Version%snapshotEvery == 0 {
		c.put(write{table: s.tables.events, pk: own, wcu: 1, command: command, ownRate: true})
	}
	for _, pk := range s.indexPKs(e) {
		c.put(write{table: s.tables.index, pk: pk, wcu: units(ItemSize(e) + 64)})
	}
	c.dims["all"]++
	c.dims["t#"+e.EventType]++
	c.dims["a#"+e.AggregateType]++
	for _, d := range docs {
		// The document and the projection's guard for the stream, in one transaction. A
		// document keyed by the aggregate's own id takes that aggregate's rate.
		c.put(write{table: s.tables.docs, pk: s.docPK(d[0], d[1]), wcu: 2, ownRate: d[1] == e.AggregateID})
		guard := "_guard:" + d[0]
		c.put(write{table: s.tables.docs, pk: s.docPK(guard, eventstore.StreamOf(e).Key()), wcu: 2, ownRate: true})
		if lk := s.listPK(guard, eventstore.StreamOf(e).Key()); lk != "" && !c.listed[guard+"/"+eventstore.StreamOf(e).Key()] {
			c.listed[guard+"/"+eventstore.StreamOf(e).Key()] = true
			c.put(write{table: s.tables.list, pk: lk, wcu: 1})
		}
		// The listing index projects keys only: DynamoDB writes it when a document is
		// created, not when its body changes.
		if lk := s.listPK(d[0], d[1]); lk != "" && !c.listed[d[0]+"/"+d[1]] {
			c.listed[d[0]+"/"+d[1]] = true
			c.put(write{table: s.tables.list, pk: lk, wcu: 1})
		}
	}
}

// simulate runs n commands of the seeds' mix against the scheme.
func simulate(s scheme, n int, seed uint64) *capacityRun {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	zipf := func(max uint64) *rand.Zipf { return rand.NewZipf(r, 1.07, 1, max-1) }
	acc, cust, prod, proj, user := zipf(accounts), zipf(customers), zipf(products), zipf(projects), zipf(users)
	versions := map[string]int64{}
	next := func(st eventstore.Stream) int64 { versions[st.Key()]++; return versions[st.Key()] }
	c := &capacityRun{listed: map[string]bool{}, dims: map[string]int{}}
	for i := range n {
		c.commands++
		keyed := r.Float64() < keyedShare
		corr := event.NewID()
		idem := func() {
			if keyed {
				c.put(write{table: s.tables.docs, pk: s.docPK("_idempotency", event.NewID()), wcu: 1, command: true})
			}
		}
		switch x := r.Float64(); {
		case x < 0.60: // bank: a deposit or a withdrawal on a Zipf-chosen account
			st := eventstore.Stream{Type: bank.AggregateType, ID: fmt.Sprintf("acc-%d", acc.Uint64())}
			typ := bank.MoneyDeposited
			if i%2 == 1 {
				typ = bank.MoneyWithdrawn
			}
			e := stored(st, next(st), event.MustNew(typ, bank.Movement{Amount: money.Amount(12345), Reference: "ref-" + corr[:8]}), corr)
			c.appendEvent(s, e, keyed, true, [2]string{bank.AccountsCollection, st.ID})
			idem()
		case x < 0.75: // orders: placed by a client, then the saga pays, reserves, confirms
			oid := fmt.Sprintf("ord-%d", i)
			cid := fmt.Sprintf("cust-%d", cust.Uint64())
			accID := fmt.Sprintf("acc-%d", acc.Uint64())
			items := make([]orders.Item, itemsPerOrder)
			for k := range items {
				items[k] = orders.Item{ProductID: fmt.Sprintf("prod-%d", prod.Uint64()), Quantity: 1, Price: 1999}
			}
			ost := eventstore.Stream{Type: orders.AggregateType, ID: oid}
			placed := stored(ost, next(ost), event.MustNew(orders.Placed, orders.PlacedPayload{CustomerID: cid, PaymentAccountID: accID, Items: items, TotalAmount: 3998}), corr)
			c.appendEvent(s, placed, keyed, true, [2]string{orders.OrdersCollection, oid}, [2]string{orders.CustomersCollection, cid + "#" + oid})
			idem()
			saga := func(st eventstore.Stream, e event.Event, docs ...[2]string) {
				// Steps on other aggregates carry seeded ids (guarded); the step log's own
				// entries are made idempotent by the log's state, so they are plain puts.
				c.appendEvent(s, stored(st, next(st), e, corr), st.Type != orders.FulfilmentType, false, docs...)
			}
			fst := eventstore.Stream{Type: orders.FulfilmentType, ID: oid}
			ast := eventstore.Stream{Type: bank.AggregateType, ID: accID}
			saga(ast, event.MustNew(bank.MoneyWithdrawn, bank.Movement{Amount: 3998, Reference: oid}), [2]string{bank.AccountsCollection, accID})
			saga(fst, event.MustNew(orders.FulfilmentStepRecorded, orders.StepRecorded{Step: orders.StepPayment, Outcome: orders.PaymentTaken}))
			saga(ost, event.MustNew(orders.Paid, orders.PaidPayload{Amount: 3998}), [2]string{orders.OrdersCollection, oid})
			for _, it := range items {
				pst := eventstore.Stream{Type: orders.ProductType, ID: it.ProductID}
				saga(pst, event.MustNew(orders.StockReserved, orders.StockPayload{Quantity: 1, OrderID: oid}), [2]string{orders.ProductsCollection, it.ProductID})
				saga(fst, event.MustNew(orders.FulfilmentStepRecorded, orders.StepRecorded{Step: orders.StepReserved, ProductID: it.ProductID}))
			}
			saga(ost, event.MustNew(orders.Confirmed, orders.Empty{}), [2]string{orders.OrdersCollection, oid}, [2]string{orders.CustomersCollection, cid + "#" + oid})
		case x < 0.90: // tasks: a workflow step on a task of a Zipf-chosen project
			pid := fmt.Sprintf("proj-%d", proj.Uint64())
			st := eventstore.Stream{Type: tasks.AggregateType, ID: fmt.Sprintf("task-%d", r.IntN(5_000_000))}
			e := stored(st, next(st), event.MustNew(tasks.Assigned, map[string]string{"assignee": "bob", "projectId": pid}), corr)
			c.appendEvent(s, e, keyed, true, [2]string{tasks.TasksCollection, st.ID},
				[2]string{tasks.AnalyticsCollection, pid + "#" + e.Timestamp.Format("20060102")})
			idem()
		default: // user contexts: a preference changed on a Zipf-chosen user
			st := eventstore.Stream{Type: usercontext.AggregateType, ID: fmt.Sprintf("user-%d", user.Uint64())}
			e := stored(st, next(st), event.MustNew(usercontext.PreferenceUpdated, map[string]any{"preference": "theme", "old_value": "light", "new_value": "dark"}), corr)
			c.appendEvent(s, e, keyed, true, [2]string{usercontext.Collection, st.ID})
			idem()
		}
	}
	return c
}

// tableFigures is one table's (or index's) line of the model.
type tableFigures struct {
	name                 string
	wcuPerCmd, wcuPerSec float64
	hotKey               string
	hotWCU               float64 // the hottest partition key's write units per second
	otherKey             string  // the hottest key that is not one aggregate's own stream
	otherWCU             float64
	monthly              float64
}

func figures(s scheme, c *capacityRun, rate float64) []tableFigures {
	byTable := map[string]map[string]float64{}
	own := map[string]bool{}
	total := map[string]float64{}
	for _, w := range c.writes {
		if byTable[w.table] == nil {
			byTable[w.table] = map[string]float64{}
		}
		byTable[w.table][w.pk] += w.wcu
		total[w.table] += w.wcu
		if w.ownRate {
			own[w.table+"\x00"+w.pk] = true
		}
	}
	scale := rate / float64(c.commands)
	var out []tableFigures
	for _, t := range []string{s.tables.events, s.tables.index, s.tables.docs, s.tables.list} {
		f := tableFigures{name: t, wcuPerCmd: total[t] / float64(c.commands), wcuPerSec: total[t] * scale}
		keys := make([]string, 0, len(byTable[t]))
		for k := range byTable[t] {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return byTable[t][keys[i]] > byTable[t][keys[j]] })
		for i, k := range keys {
			if i == 0 {
				f.hotKey, f.hotWCU = k, byTable[t][k]*scale
			}
			if !own[t+"\x00"+k] {
				f.otherKey, f.otherWCU = k, byTable[t][k]*scale
				break
			}
		}
		f.monthly = f.wcuPerSec * secondsMonth / 1e6 * pricePerMWRU
		out = append(out, f)
	}
	return out
}

func TestCapacityModel(t *testing.T) {
	s := modelScheme()
	run := simulate(s, modelCommands, 1)
	var rates []float64
	for _, f := range strings.Split(*capacityRates, ",") {
		var r float64
		if _, err := fmt.Sscan(f, &r); err != nil || r <= 0 {
			t.Fatalf("-capacity.rates: %q", f)
		}
		rates = append(rates, r)
	}
	perEvent := run.cmdWCU / float64(run.cmdItems)
	keylessUnits := units(ItemSize(stored(eventstore.Stream{Type: bank.AggregateType, ID: "acc-1"}, 7,
		event.MustNew(bank.MoneyDeposited, bank.Movement{Amount: 12345, Reference: "ref-1"}), event.NewID())))
	var b strings.Builder
	fmt.Fprintf(&b, "\nWorkload: %d commands modelled (60%% bank, 15%% orders with the saga, 15%% tasks, 10%% contexts; Zipf s=1.07 over %d accounts, %d customers, %d products, %d projects, %d users; %.0f%% with an Idempotency-Key); %.2f events per command.\n",
		run.commands, accounts, customers, products, projects, users, keyedShare*100, float64(run.events)/float64(run.commands))
	fmt.Fprintf(&b, "Command path: a command without a key writes %.0f unit per ≤1 KB event and reads 0 units warm (the process kept the aggregate) or 1 Query (≤4 KB: 1 unit) cold; with a key, event + id guard in one transaction (2 × (event units + 1)) plus the idempotency record. Mean over the mix (keys and transactions included): %.2f write units per command-path event.\n",
		keylessUnits, perEvent)
	for _, rate := range rates {
		fs := figures(s, run, rate)
		fmt.Fprintf(&b, "\nAt %.0f commands/s:\n\n| table / index | write units per command | write units/s | hottest partition key | its units/s | hottest key not bound to one aggregate | its units/s | on-demand writes per month |\n|---|---|---|---|---|---|---|---|\n", rate)
		var monthly, eventsWCU float64
		for _, f := range fs {
			fmt.Fprintf(&b, "| %s | %.2f | %.0f | `%s` | %.0f | `%s` | %.0f | $%.0f |\n", f.name, f.wcuPerCmd, f.wcuPerSec, short(f.hotKey), f.hotWCU, short(f.otherKey), f.otherWCU, f.monthly)
			monthly += f.monthly
			if f.name == s.tables.events {
				eventsWCU = f.wcuPerSec
			}
			if rate <= 10_000 && f.otherWCU > partitionWCU {
				t.Errorf("at %.0f commands/s, %s key %s takes %.0f write units/s (limit %.0f)", rate, f.name, f.otherKey, f.otherWCU, partitionWCU)
			}
		}
		eventsPerSec := float64(run.events) / float64(run.commands) * rate
		shards := math.Max(1, math.Ceil(eventsWCU/partitionWCU))
		cmdReads := rate * 1 // cold: one Query per command; warm: none
		fmt.Fprintf(&b, "\nStream: %.0f events/s over about %.0f shards (one per 1,000 write units/s of the events table); projector and indexer: about %.0f invocations/s at batches of %d. Command-path reads: 0 (warm) to %.0f units/s (cold), $%.0f a month at most. Writes: $%.0f a month on demand.\n",
			eventsPerSec, shards, math.Max(shards, eventsPerSec/streamBatch), streamBatch, cmdReads, cmdReads*secondsMonth/1e6*pricePerMRRU, monthly)
		if need := neededShards(run, rate); need > indexShardsFor {
			fmt.Fprintf(&b, "At this rate set INDEX_SHARDS=%d: with %d, an index key would take more than %.0f write units/s.\n", need, indexShardsFor, partitionWCU)
		}
		for _, f := range fs {
			switch {
			case f.otherWCU <= partitionWCU || f.name == s.tables.index:
			case f.name == s.tables.list:
				fmt.Fprintf(&b, "At this rate raise infra.ReadModelListShards to %d: `%s` takes %.0f write units/s.\n",
					nextPow2(float64(infra.ReadModelListShards)*f.otherWCU/(0.8*partitionWCU)), short(f.otherKey), f.otherWCU)
			default:
				fmt.Fprintf(&b, "At this rate `%s` (%s) takes %.0f write units/s: split that document by time or shard.\n", short(f.otherKey), f.name, f.otherWCU)
			}
		}
	}
	if keylessUnits != 1 {
		t.Errorf("a ≤1 KB event without a key costs %.0f write units on the command path, want 1", keylessUnits)
	}
	t.Log(b.String())
}

func short(k string) string {
	if len(k) > 48 {
		return k[:45] + "…"
	}
	return k
}

// neededShards is the smallest index shard count (a power of two) at which the busiest
// dimension of the index (all events, one event type, one aggregate type) spread over
// the shards of an hour's bucket stays within a partition's write units at rate.
func neededShards(run *capacityRun, rate float64) int {
	busiest := 0
	for _, n := range run.dims {
		busiest = max(busiest, n)
	}
	perSec := float64(busiest) / float64(run.commands) * rate
	shards := indexShardsFor
	for perSec/float64(shards) > partitionWCU*0.8 { // 20% headroom for an uneven hash
		shards *= 2
	}
	return shards
}

func modelScheme() scheme { return modelSchemeWith(indexShardsFor) }

func nextPow2(x float64) int {
	n := 1
	for float64(n) < x {
		n *= 2
	}
	return n
}
