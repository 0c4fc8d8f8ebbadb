// Package chart draws the admin overview's charts as inline SVG on the
// server: a line chart (one or more series over days, the first filled
// below when asked) and a stacked bar chart (counts by category over days,
// or over any other labels). The pages' CSP allows no script and no inline
// style, so a chart is plain SVG elements coloured by presentation
// attributes, which CSS classes from the pages' stylesheet may restyle
// (dark mode), and it scales with its container through its viewBox.
//
// Every chart carries a <title> and a <desc> for screen readers, a legend,
// and the numbers themselves in a table inside a <details>, so that no
// figure is only in the picture. Every text given is escaped here: the
// output is built from escaped strings only, which is what makes it safe
// to return as template.HTML.
//
// The package knows no language and no HTTP: the caller passes the texts,
// already translated, and how to write numbers.
package chart

import (
	"html/template"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Series is one line, or one layer of the stacked bars.
type Series struct {
	// Name is the series' legend text and table column heading.
	Name string
	// Values are one per label. NaN marks a value not known (a gap in a
	// line, an empty bar, "–" in the table); a missing tail counts as NaN.
	Values []float64
	// Cells, when given, replace the table's text for the values (such as
	// "5.0% (2 of 40)"); "" keeps the formatted value.
	Cells []string
}

// Chart is one chart and its table.
type Chart struct {
	// ID makes the element IDs of this chart unique in its page; only
	// ASCII letters, digits and '-' are kept.
	ID string
	// Title and Desc are the chart's accessible name and description.
	Title, Desc string
	// Labels are the axis labels, one per value (a short date, a bucket).
	Labels []string
	// TableLabels are the table's row headings, one per value (the whole
	// date); nil uses Labels.
	TableLabels []string
	// Series are drawn in order, and stacked in order for bars.
	Series []Series
	// Extra are columns shown in the table only (counts behind a rate).
	Extra []Series
	// Totals, when TotalLabel is set, make the table's last row: one per
	// series then one per extra column; NaN shows "–".
	Totals     []float64
	TotalLabel string
	// TotalCells, when given, replace the totals' text, as Cells do.
	TotalCells []string
	// LabelHead heads the table's label column ("Day").
	LabelHead string
	// Summary is the <details>' summary ("Figures as a table").
	Summary string
	// Empty is shown instead of the chart when no value is known.
	Empty string
	// Max fixes the top of the value axis (100 for percentages); 0 takes
	// it from the data.
	Max float64
	// Tick writes an axis value ("1k"); nil writes Compact's English.
	Tick func(float64) string
	// Value writes a value in the table and in a point's tooltip; nil
	// writes whole numbers with thousands separators.
	Value func(float64) string
	// Area fills below the first series of a line chart.
	Area bool
}

// The drawing's size in viewBox units. The SVG is as wide as its
// container and keeps this aspect; text is sized in the same units, so
// it reads about 11 px on a 375 px phone, where the drawing is about
// 300 px wide, and a little larger on a desktop's column.
const (
	width, height              = 320.0, 180.0
	left, right, top, bottom   = 38.0, 6.0, 8.0, 22.0
	plotW                      = width - left - right
	plotH                      = height - top - bottom
	fontSize                   = 11.0
	yTicks                     = 4 // about this many steps up the value axis
	pointsShownMax             = 45
	barShare                   = 0.72 // of a label's band, the rest a gap
	labelGap, charWidth, cjkEm = 6.0, 0.58, 1.0
)

// palette is the series' colours (Okabe and Ito's, which stay apart for
// the common colour-vision deficiencies), cycled; the stylesheet's
// .s0... classes may restyle them.
var palette = []string{"#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00"}

func colour(i int) string { return palette[i%len(palette)] }

// Line draws c as lines over its labels, one per series.
func Line(c Chart) template.HTML { return draw(c, false) }

// StackedBars draws c as one bar per label, its series stacked.
func StackedBars(c Chart) template.HTML { return draw(c, true) }

func draw(c Chart, bars bool) template.HTML {
	c.ID = cleanID(c.ID)
	if c.Value == nil {
		c.Value = Whole
	}
	if c.Tick == nil {
		c.Tick = Compact
	}
	var b strings.Builder
	kind := "line"
	if bars {
		kind = "bars"
	}
	b.WriteString(`<figure class="chart chart-` + kind + `" id="` + c.ID + `">`)
	if !c.known() {
		b.WriteString(`<p class="chart-empty">` + esc(c.Empty) + `</p></figure>`)
		return template.HTML(b.String())
	}
	ax := c.axis(bars)
	if bars {
		c.bars(&b, ax)
	} else {
		c.lines(&b, ax)
	}
	c.legend(&b)
	c.table(&b)
	b.WriteString(`</figure>`)
	return template.HTML(b.String())
}

// known reports whether any value of any series is known.
func (c *Chart) known() bool {
	for _, s := range c.Series {
		for i := range c.Labels {
			if !math.IsNaN(s.at(i)) {
				return true
			}
		}
	}
	return false
}

func (s Series) at(i int) float64 {
	if i < len(s.Values) {
		return s.Values[i]
	}
	return math.NaN()
}

// axis is the value axis: its top and the step between ticks.
type axis struct{ top, step float64 }

// axis is Max in yTicks steps, or from 0 to the largest value (largest
// stack, for bars) rounded up to a tick.
func (c *Chart) axis(bars bool) axis {
	if c.Max > 0 {
		return axis{c.Max, c.Max / yTicks}
	}
	var most float64
	for i := range c.Labels {
		var stack float64
		for _, s := range c.Series {
			v := s.at(i)
			if math.IsNaN(v) || v < 0 {
				continue
			}
			if bars {
				stack += v
			} else {
				most = math.Max(most, v)
			}
		}
		most = math.Max(most, stack)
	}
	step := niceStep(most / yTicks)
	return axis{math.Max(step, math.Ceil(most/step)*step), step}
}

// niceStep is the tick step of 1, 2 or 5 times a power of ten at or above
// raw, and never below 1: the charts count whole things or percentages.
func niceStep(raw float64) float64 {
	if raw <= 1 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

// y is the vertical position of value v on an axis up to axisTop.
func y(v, axisTop float64) float64 {
	v = math.Max(0, math.Min(v, axisTop))
	return top + plotH - v/axisTop*plotH
}

// open starts the SVG with its accessible name, the grid and the value
// axis.
func (c *Chart) open(b *strings.Builder, ax axis) {
	b.WriteString(`<svg class="chart-svg" viewBox="0 0 ` + num(width) + ` ` + num(height) +
		`" width="100%" preserveAspectRatio="xMidYMid meet" role="img" aria-labelledby="` +
		c.ID + `-title" aria-describedby="` + c.ID + `-desc" font-size="` + num(fontSize) + `">`)
	b.WriteString(`<title id="` + c.ID + `-title">` + esc(c.Title) + `</title>`)
	b.WriteString(`<desc id="` + c.ID + `-desc">` + esc(c.Desc) + `</desc>`)
	b.WriteString(`<g class="grid" stroke="#d5dae1" stroke-width="0.5">`)
	for k := 0.0; k*ax.step <= ax.top+ax.step/2; k++ {
		yy := num(y(k*ax.step, ax.top))
		b.WriteString(`<line x1="` + num(left) + `" x2="` + num(width-right) + `" y1="` + yy + `" y2="` + yy + `"/>`)
	}
	b.WriteString(`</g><g class="ticks" fill="#4a525d" text-anchor="end">`)
	for k := 0.0; k*ax.step <= ax.top+ax.step/2; k++ {
		v := k * ax.step
		b.WriteString(`<text x="` + num(left-4) + `" y="` + num(y(v, ax.top)+fontSize*0.35) + `">` + esc(c.Tick(v)) + `</text>`)
	}
	b.WriteString(`</g>`)
}

// labels writes the label axis: as many labels as fit, evenly spaced,
// centred on their band.
func (c *Chart) labels(b *strings.Builder, x func(i int) float64, band float64) {
	widest := 0.0
	for _, l := range c.Labels {
		widest = math.Max(widest, textWidth(l))
	}
	every := max(1, int(math.Ceil((widest+labelGap)/band)))
	b.WriteString(`<g class="labels" fill="#4a525d" text-anchor="middle">`)
	for i := 0; i < len(c.Labels); i += every {
		b.WriteString(`<text x="` + num(x(i)) + `" y="` + num(height-bottom+fontSize+4) + `">` + esc(c.Labels[i]) + `</text>`)
	}
	b.WriteString(`</g><line class="axis" stroke="#6b7480" x1="` + num(left) + `" x2="` + num(width-right) +
		`" y1="` + num(top+plotH) + `" y2="` + num(top+plotH) + `"/>`)
}

// textWidth estimates a label's width in viewBox units: wide for CJK.
func textWidth(s string) float64 {
	var w float64
	for _, r := range s {
		if r > unicode.MaxLatin1 && (unicode.Is(unicode.Han, r) || unicode.Is(unicode.Hiragana, r) ||
			unicode.Is(unicode.Katakana, r) || r >= 0xff00 && r <= 0xffef) {
			w += cjkEm
		} else {
			w += charWidth
		}
	}
	return w * fontSize
}

func (c *Chart) lines(b *strings.Builder, ax axis) {
	c.open(b, ax)
	axisTop := ax.top
	n := len(c.Labels)
	band := plotW / float64(n)
	x := func(i int) float64 { return left + band*(float64(i)+0.5) }
	c.labels(b, x, band)
	for si, s := range c.Series {
		col := colour(si)
		var line, area strings.Builder
		var run []int // the indexes of the current unbroken stretch
		flush := func() {
			if len(run) == 0 {
				return
			}
			for k, i := range run {
				cmd := "L"
				if k == 0 {
					cmd = "M"
				}
				line.WriteString(cmd + num(x(i)) + " " + num(y(s.at(i), axisTop)) + " ")
			}
			if c.Area && si == 0 && len(run) > 1 {
				area.WriteString("M" + num(x(run[0])) + " " + num(top+plotH) + " ")
				for _, i := range run {
					area.WriteString("L" + num(x(i)) + " " + num(y(s.at(i), axisTop)) + " ")
				}
				area.WriteString("L" + num(x(run[len(run)-1])) + " " + num(top+plotH) + " Z ")
			}
			run = run[:0]
		}
		for i := range n {
			if math.IsNaN(s.at(i)) {
				flush()
				continue
			}
			run = append(run, i)
		}
		flush()
		b.WriteString(`<g class="series s` + strconv.Itoa(si) + `">`)
		if area.Len() > 0 {
			b.WriteString(`<path class="area" fill="` + col + `" fill-opacity="0.15" stroke="none" d="` + strings.TrimSpace(area.String()) + `"/>`)
		}
		if line.Len() > 0 {
			b.WriteString(`<path class="line" fill="none" stroke="` + col + `" stroke-width="2" stroke-linejoin="round" d="` +
				strings.TrimSpace(line.String()) + `"/>`)
		}
		r := "2.5"
		if n > pointsShownMax {
			r = "1.2"
		}
		for i := range n {
			v := s.at(i)
			if math.IsNaN(v) {
				continue
			}
			b.WriteString(`<circle class="point" fill="` + col + `" r="` + r + `" cx="` + num(x(i)) + `" cy="` + num(y(v, axisTop)) + `">` +
				`<title>` + esc(c.tableLabel(i)+" · "+s.Name+": "+c.cell(s, i)) + `</title></circle>`)
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
}

func (c *Chart) bars(b *strings.Builder, ax axis) {
	c.open(b, ax)
	axisTop := ax.top
	n := len(c.Labels)
	band := plotW / float64(n)
	w := band * barShare
	if band < 3 {
		w = band // too narrow for a gap: the bars touch
	}
	x := func(i int) float64 { return left + band*(float64(i)+0.5) }
	c.labels(b, x, band)
	stacks := make([]float64, n)
	for si, s := range c.Series {
		b.WriteString(`<g class="series s` + strconv.Itoa(si) + `" fill="` + colour(si) + `">`)
		for i := range n {
			v := s.at(i)
			if math.IsNaN(v) || v <= 0 {
				continue
			}
			y0, y1 := y(stacks[i], axisTop), y(stacks[i]+v, axisTop)
			stacks[i] += v
			b.WriteString(`<rect class="bar" x="` + num(x(i)-w/2) + `" y="` + num(y1) + `" width="` + num(w) +
				`" height="` + num(math.Max(y0-y1, 0.5)) + `"><title>` + esc(c.tableLabel(i)+" · "+s.Name+": "+c.cell(s, i)) + `</title></rect>`)
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
}

// legend names the series with their colours.
func (c *Chart) legend(b *strings.Builder) {
	b.WriteString(`<ul class="legend">`)
	for si, s := range c.Series {
		b.WriteString(`<li><svg class="swatch" viewBox="0 0 10 10" width="10" height="10" aria-hidden="true">` +
			`<rect class="s` + strconv.Itoa(si) + `" width="10" height="10" fill="` + colour(si) + `"/></svg>` + esc(s.Name) + `</li>`)
	}
	b.WriteString(`</ul>`)
}

func (c *Chart) tableLabel(i int) string {
	if i < len(c.TableLabels) {
		return c.TableLabels[i]
	}
	return c.Labels[i]
}

// cell is a value's text in the table and tooltips.
func (c *Chart) cell(s Series, i int) string {
	if i < len(s.Cells) && s.Cells[i] != "" {
		return s.Cells[i]
	}
	v := s.at(i)
	if math.IsNaN(v) {
		return "–"
	}
	return c.Value(v)
}

// table is the figures behind the chart, for screen readers and for
// anyone who wants the numbers.
func (c *Chart) table(b *strings.Builder) {
	cols := append(append([]Series(nil), c.Series...), c.Extra...)
	b.WriteString(`<details class="chart-table"><summary>` + esc(c.Summary) + `</summary><div class="scroll"><table>`)
	b.WriteString(`<caption>` + esc(c.Title) + `</caption><thead><tr><th scope="col">` + esc(c.LabelHead) + `</th>`)
	for _, s := range cols {
		b.WriteString(`<th scope="col">` + esc(s.Name) + `</th>`)
	}
	b.WriteString(`</tr></thead><tbody>`)
	for i := range c.Labels {
		b.WriteString(`<tr><th scope="row">` + esc(c.tableLabel(i)) + `</th>`)
		for _, s := range cols {
			b.WriteString(`<td>` + esc(c.cell(s, i)) + `</td>`)
		}
		b.WriteString(`</tr>`)
	}
	b.WriteString(`</tbody>`)
	if c.TotalLabel != "" {
		b.WriteString(`<tfoot><tr><th scope="row">` + esc(c.TotalLabel) + `</th>`)
		for k := range cols {
			t := math.NaN()
			if k < len(c.Totals) {
				t = c.Totals[k]
			}
			text := "–"
			switch {
			case k < len(c.TotalCells) && c.TotalCells[k] != "":
				text = c.TotalCells[k]
			case !math.IsNaN(t):
				text = c.Value(t)
			}
			b.WriteString(`<td>` + esc(text) + `</td>`)
		}
		b.WriteString(`</tr></tfoot>`)
	}
	b.WriteString(`</table></div></details>`)
}

// esc escapes text for an element's content or a quoted attribute.
func esc(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return template.HTMLEscapeString(s)
}

// num writes a coordinate with at most two decimals.
func num(v float64) string {
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

// cleanID keeps an ID's ASCII letters, digits and dashes.
func cleanID(id string) string {
	var b strings.Builder
	for _, r := range id {
		if r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-') {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "chart"
	}
	return b.String()
}

// Whole writes v rounded to a whole number, with thousands separated by
// commas (as both English and Japanese write them).
func Whole(v float64) string {
	n := int64(math.Round(v))
	neg := n < 0
	if neg {
		n = -n
	}
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Compact writes an axis value short, in English: 950, 1.5k, 20k, 3M, 1B.
func Compact(v float64) string {
	for _, u := range []struct {
		size   float64
		suffix string
	}{{1e9, "B"}, {1e6, "M"}, {1e3, "k"}} {
		if math.Abs(v) >= u.size {
			return short(v/u.size) + u.suffix
		}
	}
	return Whole(v)
}

// CompactJA writes an axis value short, in Japanese: up to 9,999 in full,
// then in 万 (ten thousands) and 億 (hundred millions).
func CompactJA(v float64) string {
	switch {
	case math.Abs(v) >= 1e8:
		return short(v/1e8) + "億"
	case math.Abs(v) >= 1e4:
		return short(v/1e4) + "万"
	}
	return Whole(v)
}

// short writes v with at most one decimal, and none when it is whole.
func short(v float64) string {
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
}
