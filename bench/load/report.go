package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// Report is what a run measured.
type Report struct {
	Duration    time.Duration `json:"duration"`
	Concurrency int           `json:"concurrency"`
	Members     int           `json:"members"`
	Kinds       []KindReport  `json:"kinds"` // browse, app, email, settings
	Total       KindReport    `json:"total"`
	// SignInsFirst counts the app sign-ins (in Kinds' app) made because
	// the member drawn to browse or open the settings had no session yet.
	SignInsFirst int `json:"sign_ins_first"`
	// CodeMails and OtherMails count the messages the mail sink received:
	// codes, and the rest (notices of a new browser).
	CodeMails  int64 `json:"code_mails"`
	OtherMails int64 `json:"other_mails"`
}

// KindReport is one kind's share.
type KindReport struct {
	Kind      string  `json:"kind"`
	Ops       int     `json:"ops"` // finished, with or without an error
	PerSecond float64 `json:"per_second"`
	// P50 and P99 of the operations that succeeded: a sign-in is all of
	// its requests, from the member site's sign-in to the page after the
	// code (and the wait for the mail).
	P50 time.Duration `json:"p50"`
	P99 time.Duration `json:"p99"`
	// Errors by cause: the step, and the status or the error.
	Errors map[string]int `json:"errors"`
	// Skipped counts draws of this kind that found no member able to do
	// it just then (busy, or with this time step's app code or this
	// hour's emails used): the worker drew again.
	Skipped int `json:"skipped"`
}

// ErrorCount is the sum of Errors.
func (k KindReport) ErrorCount() int {
	n := 0
	for _, c := range k.Errors {
		n += c
	}
	return n
}

func (r *runner) report(recs []*recorder, took time.Duration) Report {
	rep := Report{Duration: took, Concurrency: r.cfg.concurrency, Members: len(r.members)}
	rep.Total = KindReport{Kind: "total", Errors: map[string]int{}}
	var all []time.Duration
	for k := range kinds {
		kr := KindReport{Kind: k.String(), Errors: map[string]int{}}
		var lat []time.Duration
		for _, rec := range recs {
			lat = append(lat, rec.took[k]...)
			for cause, n := range rec.errs[k] {
				kr.Errors[cause] += n
				rep.Total.Errors[k.String()+": "+cause] += n
			}
			kr.Skipped += rec.skipped[k]
		}
		kr.Ops = len(lat) + kr.ErrorCount()
		kr.PerSecond = float64(kr.Ops) / took.Seconds()
		kr.P50, kr.P99 = percentiles(lat)
		all = append(all, lat...)
		rep.Kinds = append(rep.Kinds, kr)
		rep.Total.Ops += kr.Ops
		rep.Total.Skipped += kr.Skipped
	}
	for _, rec := range recs {
		rep.SignInsFirst += rec.first
	}
	rep.Total.PerSecond = float64(rep.Total.Ops) / took.Seconds()
	rep.Total.P50, rep.Total.P99 = percentiles(all)
	if r.cfg.mail != nil {
		rep.CodeMails, rep.OtherMails = r.cfg.mail.codes.Load(), r.cfg.mail.other.Load()
	}
	return rep
}

// percentiles returns the median and the 99th percentile (nearest rank).
func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(d))+0.999999) - 1
		return d[min(max(i, 0), len(d)-1)]
	}
	return rank(0.50), rank(0.99)
}

// print writes the report as a table, then the errors by kind and cause.
func (rep Report) print(w io.Writer) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	fmt.Fprintf(w, "%d members, %d concurrent, %s\n\n", rep.Members, rep.Concurrency, rep.Duration.Round(time.Millisecond))
	fmt.Fprintf(w, "%-9s %9s %10s %9s %9s %7s %8s\n", "kind", "ops", "ops/s", "p50 ms", "p99 ms", "errors", "skipped")
	for _, k := range append(slices.Clone(rep.Kinds), rep.Total) {
		fmt.Fprintf(w, "%-9s %9d %10.1f %9.2f %9.2f %7d %8d\n", k.Kind, k.Ops, k.PerSecond, ms(k.P50), ms(k.P99), k.ErrorCount(), k.Skipped)
	}
	fmt.Fprintf(w, "\nsign-ins with the app before browsing or settings (no session yet): %d\n", rep.SignInsFirst)
	fmt.Fprintf(w, "mail received: %d codes, %d other (notices)\n", rep.CodeMails, rep.OtherMails)
	if len(rep.Total.Errors) == 0 {
		fmt.Fprintln(w, "errors: none")
		return
	}
	fmt.Fprintln(w, "errors:")
	for _, cause := range slices.Sorted(maps.Keys(rep.Total.Errors)) {
		fmt.Fprintf(w, "  %6d  %s\n", rep.Total.Errors[cause], cause)
	}
}
