package chart

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
)

// element is what a test reads back of the output: decoded with
// encoding/xml, so a chart that is not well-formed fails to decode.
type element struct {
	name  string
	attrs map[string]string
	text  string // the text directly inside
}

func decode(t *testing.T, out string) []element {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(out))
	d.Strict = true
	var els []element
	var open []int
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, out)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			e := element{name: tok.Name.Local, attrs: map[string]string{}}
			for _, a := range tok.Attr {
				e.attrs[a.Name.Local] = a.Value
			}
			els = append(els, e)
			open = append(open, len(els)-1)
		case xml.EndElement:
			open = open[:len(open)-1]
		case xml.CharData:
			if len(open) > 0 {
				els[open[len(open)-1]].text += string(tok)
			}
		}
	}
	if len(els) == 0 || els[0].name != "figure" {
		t.Fatalf("the output is not one figure:\n%s", out)
	}
	return els
}

// count counts the elements named name whose class list has class ("" for
// any).
func count(els []element, name, class string) int {
	n := 0
	for _, e := range els {
		if e.name == name && (class == "" || strings.Contains(" "+e.attrs["class"]+" ", " "+class+" ")) {
			n++
		}
	}
	return n
}

func texts(els []element, name string) []string {
	var out []string
	for _, e := range els {
		if e.name == name {
			out = append(out, e.text)
		}
	}
	return out
}

func days(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "12/" + string(rune('1'+i%9))
	}
	return out
}

func sample() Chart {
	return Chart{
		ID: "verifications", Title: "Verifications", Desc: "By method, per day", Labels: []string{"12/1", "12/2", "12/3"},
		TableLabels: []string{"1 Dec 2026", "2 Dec 2026", "3 Dec 2026"},
		Series:      []Series{{Name: "App", Values: []float64{3, 0, 5}}, {Name: "Email", Values: []float64{1, 2, math.NaN()}}},
		Extra:       []Series{{Name: "Attempts", Values: []float64{4, 2, 5}}},
		Totals:      []float64{8, 3, 11}, TotalLabel: "Total", LabelHead: "Day", Summary: "Figures", Empty: "No data yet",
	}
}

func TestWellFormedWithTitleDescLegendAndTable(t *testing.T) {
	for name, draw := range map[string]func(Chart) string{
		"line": func(c Chart) string { return string(Line(c)) },
		"bars": func(c Chart) string { return string(StackedBars(c)) },
	} {
		els := decode(t, draw(sample()))
		svg := els[1]
		if svg.name != "svg" || svg.attrs["viewBox"] != "0 0 320 180" || svg.attrs["width"] != "100%" || svg.attrs["role"] != "img" ||
			svg.attrs["aria-labelledby"] != "verifications-title" || svg.attrs["aria-describedby"] != "verifications-desc" {
			t.Errorf("%s: the svg element: %+v", name, svg)
		}
		if got := texts(els, "title"); got[0] != "Verifications" {
			t.Errorf("%s: titles %q", name, got)
		}
		if got := texts(els, "desc"); len(got) != 1 || got[0] != "By method, per day" {
			t.Errorf("%s: desc %q", name, got)
		}
		if n := count(els, "li", ""); n != 2 {
			t.Errorf("%s: %d legend entries, want 2", name, n)
		}
		// The table: a heading row, a row a day, the totals.
		if got := strings.Join(texts(els, "th"), "|"); got != "Day|App|Email|Attempts|1 Dec 2026|2 Dec 2026|3 Dec 2026|Total" {
			t.Errorf("%s: table headings %q", name, got)
		}
		if got := strings.Join(texts(els, "td"), "|"); got != "3|1|4|0|2|2|5|–|5|8|3|11" {
			t.Errorf("%s: table cells %q", name, got)
		}
		if count(els, "details", "chart-table") != 1 || len(texts(els, "summary")) != 1 {
			t.Errorf("%s: no details with a summary", name)
		}
		for _, e := range els {
			if _, ok := e.attrs["style"]; ok {
				t.Errorf("%s: a style attribute, which the CSP refuses: %+v", name, e)
			}
		}
	}
}

func TestLinePointsAndGaps(t *testing.T) {
	c := sample()
	c.Area = true
	els := decode(t, string(Line(c)))
	// One point per known value: 3 + 2.
	if n := count(els, "circle", "point"); n != 5 {
		t.Errorf("%d points, want 5", n)
	}
	if n := count(els, "path", "line"); n != 2 {
		t.Errorf("%d lines, want 2", n)
	}
	if n := count(els, "path", "area"); n != 1 {
		t.Errorf("%d areas, want 1 (under the first series)", n)
	}
	// A gap in the middle breaks the line in two.
	c.Series = []Series{{Name: "Coverage", Values: []float64{50, math.NaN(), 60, 70}}}
	c.Labels = days(4)
	c.TableLabels = nil
	for _, e := range decode(t, string(Line(c))) {
		if e.name == "path" && e.attrs["class"] == "line" && strings.Count(e.attrs["d"], "M") != 2 {
			t.Errorf("a line over a gap: %q, want two stretches", e.attrs["d"])
		}
	}
	// A tooltip names the day, the series and the value.
	if got := texts(els, "title"); !contains(got, "1 Dec 2026 · App: 3") {
		t.Errorf("tooltips %q", got)
	}
}

func TestStackedBarsSkipZeroAndStack(t *testing.T) {
	els := decode(t, string(StackedBars(sample())))
	// App 3, 5 and Email 1, 2: zeros and unknowns draw no bar.
	if n := count(els, "rect", "bar"); n != 4 {
		t.Errorf("%d bars, want 4", n)
	}
	// The axis reaches the largest stack (3+1=4, 5), rounded up to a tick.
	if got := texts(els, "text"); !contains(got, "6") || contains(got, "10") {
		t.Errorf("tick labels %q, want up to 6", got)
	}
	// Stacked: on day 1, Email sits on App, touching it.
	var app, email element
	for _, e := range els {
		if e.name == "rect" && e.attrs["class"] == "bar" {
			if app.name == "" {
				app = e
			} else if email.name == "" && e.attrs["x"] == app.attrs["x"] {
				email = e
			}
		}
	}
	if email.name == "" || f(t, email.attrs["y"])+f(t, email.attrs["height"]) != f(t, app.attrs["y"]) {
		t.Errorf("not stacked: app %v, email %v", app.attrs, email.attrs)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func f(t *testing.T, s string) float64 {
	t.Helper()
	var v float64
	if _, err := fmt.Sscan(s, &v); err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return math.Round(v*100) / 100
}

func TestHostileLabelsEscaped(t *testing.T) {
	hostile := `</title></svg><script>alert(1)</script><img src=x onerror="alert(2)">&amp;"'`
	c := Chart{
		ID: `x" onload="alert(3)`, Title: hostile, Desc: hostile, Labels: []string{hostile, "b"}, TableLabels: []string{hostile, hostile},
		Series:    []Series{{Name: hostile, Values: []float64{1, 2}, Cells: []string{hostile, ""}}},
		LabelHead: hostile, Summary: hostile, TotalLabel: hostile, Totals: []float64{3}, Empty: hostile,
		Tick:  func(float64) string { return hostile },
		Value: func(float64) string { return hostile },
	}
	for _, out := range []string{string(Line(c)), string(StackedBars(c)), string(Line(Chart{Empty: hostile}))} {
		els := decode(t, out)
		low := strings.ToLower(out)
		for _, bad := range []string{"<script", "<img", `onerror="`, `onload="`, "</title></svg>"} {
			if strings.Contains(low, bad) {
				t.Errorf("unescaped %q in:\n%s", bad, out)
			}
		}
		// The text reads back as given: escaped once, not twice.
		found := false
		for _, e := range els {
			found = found || e.text == hostile
		}
		if !found {
			t.Errorf("the hostile text does not read back as given:\n%s", out)
		}
		if id := els[0].attrs["id"]; id != "xonloadalert3" && id != "chart" {
			t.Errorf("figure id %q", id)
		}
	}
	if got := Line(Chart{Empty: "x", Labels: []string{"\xff"}, Series: []Series{{Name: "\xfe", Values: []float64{1}}}}); !strings.Contains(string(got), "\uFFFD") {
		t.Errorf("invalid UTF-8 not replaced:\n%s", got)
	}
}

func TestEmptyData(t *testing.T) {
	for name, c := range map[string]Chart{
		"no labels":     {Empty: "No data yet", Series: []Series{{Name: "a"}}},
		"no series":     {Empty: "No data yet", Labels: days(7)},
		"all unknown":   {Empty: "No data yet", Labels: days(3), Series: []Series{{Name: "a", Values: []float64{math.NaN(), math.NaN()}}}},
		"values absent": {Empty: "No data yet", Labels: days(3), Series: []Series{{Name: "a"}}},
	} {
		for _, out := range []string{string(Line(c)), string(StackedBars(c))} {
			els := decode(t, out)
			if len(els) != 2 || els[1].name != "p" || els[1].attrs["class"] != "chart-empty" || els[1].text != "No data yet" {
				t.Errorf("%s: want only the message, got:\n%s", name, out)
			}
		}
	}
}

func TestOneDay(t *testing.T) {
	c := Chart{ID: "one", Title: "t", Labels: []string{"12/5"}, Series: []Series{{Name: "a", Values: []float64{7}}}}
	line := decode(t, string(Line(c)))
	if count(line, "circle", "point") != 1 {
		t.Errorf("one day: want one point")
	}
	// The point sits in the middle of the plot.
	for _, e := range line {
		if e.name == "circle" && f(t, e.attrs["cx"]) != math.Round((left+plotW/2)*100)/100 {
			t.Errorf("one point at x %s, want the middle", e.attrs["cx"])
		}
	}
	if got := texts(line, "text"); !contains(got, "12/5") {
		t.Errorf("labels %q", got)
	}
	bars := decode(t, string(StackedBars(c)))
	if n := count(bars, "rect", "bar"); n != 1 {
		t.Errorf("one day: %d bars", n)
	}
	for _, e := range bars {
		if e.name == "rect" && e.attrs["class"] == "bar" && f(t, e.attrs["width"]) > plotW {
			t.Errorf("one bar wider than the plot: %v", e.attrs)
		}
	}
}

func TestLargeNumbers(t *testing.T) {
	c := Chart{ID: "big", Labels: days(3), Series: []Series{{Name: "a", Values: []float64{1_200_000, 3_400_000, 2_500}}}}
	els := decode(t, string(StackedBars(c)))
	ticks := texts(els, "text")
	for _, want := range []string{"0", "1M", "2M", "3M", "4M"} {
		if !contains(ticks, want) {
			t.Errorf("ticks %q lack %q", ticks, want)
		}
	}
	if got := strings.Join(texts(els, "td"), "|"); got != "1,200,000|3,400,000|2,500" {
		t.Errorf("cells %q", got)
	}
	for v, want := range map[float64]string{0: "0", 950: "950", 1000: "1k", 1500: "1.5k", 20_000: "20k", 2_500_000: "2.5M", 3e9: "3B"} {
		if got := Compact(v); got != want {
			t.Errorf("Compact(%v) = %q, want %q", v, got, want)
		}
	}
	for v, want := range map[float64]string{0: "0", 5000: "5,000", 10_000: "1万", 25_000: "2.5万", 1_000_000: "100万", 3e8: "3億"} {
		if got := CompactJA(v); got != want {
			t.Errorf("CompactJA(%v) = %q, want %q", v, got, want)
		}
	}
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4321: "-4,321", 2.6: "3"} {
		if got := Whole(v); got != want {
			t.Errorf("Whole(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestZeroMax(t *testing.T) {
	c := Chart{ID: "zero", Labels: days(5), Series: []Series{{Name: "a", Values: []float64{0, 0, 0, 0, 0}}}}
	for _, out := range []string{string(Line(c)), string(StackedBars(c))} {
		els := decode(t, out)
		if strings.Contains(out, "NaN") || strings.Contains(out, "Inf") {
			t.Errorf("NaN or Inf in:\n%s", out)
		}
		if got := texts(els, "text"); !contains(got, "0") || !contains(got, "1") {
			t.Errorf("a zero chart's ticks %q, want 0 and 1", got)
		}
		if n := count(els, "rect", "bar"); n != 0 {
			t.Errorf("%d bars for zeros", n)
		}
	}
	if n := count(decode(t, string(Line(c))), "circle", "point"); n != 5 {
		t.Errorf("zeros are known values: %d points, want 5", n)
	}
}

func TestFixedMaxAndLabelsThinned(t *testing.T) {
	c := Chart{ID: "pct", Max: 100, Labels: days(90), Series: []Series{{Name: "a", Values: []float64{150, 20}}},
		Tick: func(v float64) string { return Whole(v) + "%" }}
	els := decode(t, string(Line(c)))
	ticks := texts(els, "text")
	for _, want := range []string{"0%", "25%", "50%", "75%", "100%"} {
		if !contains(ticks, want) {
			t.Errorf("ticks %q lack %q", ticks, want)
		}
	}
	// A value above the top is drawn at the top, not outside the plot.
	for _, e := range els {
		if e.name == "circle" && f(t, e.attrs["cy"]) < top {
			t.Errorf("a point above the plot: %v", e.attrs)
		}
	}
	// 90 labels do not fit: a few, evenly spaced.
	if n := count(els, "text", "") - 5; n < 4 || n > 12 {
		t.Errorf("%d day labels on the axis, want a readable few", n)
	}
	// Japanese labels are wider, so fewer fit.
	ja := c
	ja.Labels = make([]string, 30)
	for i := range ja.Labels {
		ja.Labels[i] = "12月5日"
	}
	en := c
	en.Labels = days(30)
	if nj, ne := count(decode(t, string(Line(ja))), "text", ""), count(decode(t, string(Line(en))), "text", ""); nj >= ne {
		t.Errorf("%d Japanese labels, %d English: want fewer of the wider", nj, ne)
	}
}
