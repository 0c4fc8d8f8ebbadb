package twofactor

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// describing is a registry that also keeps what was registered in it,
// so every metric is known by name, including vectors with no series yet
// (a registry gathers only series).
type describing struct {
	*prometheus.Registry
	collectors []prometheus.Collector
}

func (d *describing) Register(c prometheus.Collector) error {
	d.collectors = append(d.collectors, c)
	return d.Registry.Register(c)
}

var descName = regexp.MustCompile(`fqName: "([^"]+)"`)

// registeredSeries names every series the gateway's metrics can have:
// each metric, and a histogram's _bucket, _sum and _count.
func registeredSeries(t *testing.T) (metrics []string, series map[string]bool) {
	t.Helper()
	reg := &describing{Registry: prometheus.NewRegistry()}
	if _, err := newMetrics(reg, &scrapedState{}); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	histograms := map[string]bool{}
	for _, f := range families {
		if f.GetType() == dto.MetricType_HISTOGRAM {
			histograms[f.GetName()] = true
		}
	}
	series = map[string]bool{}
	for _, c := range reg.collectors {
		descs := make(chan *prometheus.Desc, 16)
		c.Describe(descs)
		close(descs)
		for d := range descs {
			m := descName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("no name in %s", d)
			}
			metrics = append(metrics, m[1])
			series[m[1]] = true
			if histograms[m[1]] {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					series[m[1]+suffix] = true
				}
			}
		}
	}
	if len(metrics) < 16 { // the ones this test was written with
		t.Fatalf("only %d metrics registered: %v", len(metrics), metrics)
	}
	return metrics, series
}

var metricInExpr = regexp.MustCompile(`caddy_two_factor_[a-z0-9_]+`)

// The Grafana dashboard in examples/ queries only metrics the gateway
// registers, and every one of them, through the data source variable, so
// a metric renamed or added cannot leave it behind.
func TestGrafanaDashboardMatchesMetrics(t *testing.T) {
	raw, err := os.ReadFile("examples/grafana/two-factor.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Inputs     []struct{ Name, Type, PluginID string } `json:"__inputs"`
		Templating struct {
			List []struct {
				Name, Type string
				Query      any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title, Type string
			Datasource  *struct{ Type, UID string } `json:"datasource"`
			Targets     []struct {
				Expr       string                      `json:"expr"`
				Datasource *struct{ Type, UID string } `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("examples/grafana/two-factor.json: %v", err)
	}
	if len(dash.Inputs) != 1 || dash.Inputs[0].Name != "DS_PROMETHEUS" || dash.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs: %+v, want the one Prometheus data source DS_PROMETHEUS", dash.Inputs)
	}
	metrics, series := registeredSeries(t)
	used := map[string]bool{}
	var exprs []string
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			s, _ := q["query"].(string)
			exprs = append(exprs, s)
		}
	}
	queries := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" {
			t.Errorf("panel %q: data source %+v, want ${DS_PROMETHEUS}", p.Title, p.Datasource)
		}
		for _, q := range p.Targets {
			if q.Datasource == nil || q.Datasource.UID != "${DS_PROMETHEUS}" {
				t.Errorf("panel %q: a query's data source %+v, want ${DS_PROMETHEUS}", p.Title, q.Datasource)
			}
			if !strings.Contains(q.Expr, "caddy_two_factor_") {
				t.Errorf("panel %q: query %q reads none of the gateway's metrics", p.Title, q.Expr)
			}
			exprs = append(exprs, q.Expr)
			queries++
		}
	}
	for _, e := range exprs {
		for _, name := range metricInExpr.FindAllString(e, -1) {
			if !series[name] {
				t.Errorf("the dashboard queries %s, which the gateway does not register (in %q)", name, e)
			}
			used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")] = true
			used[name] = true
		}
	}
	for _, m := range metrics {
		if !used[m] {
			t.Errorf("the dashboard shows nothing of %s", m)
		}
	}
	if queries < len(metrics) {
		t.Errorf("%d queries for %d metrics", queries, len(metrics))
	}
}

// The README's metrics table lists every metric the gateway registers.
func TestReadmeListsEveryMetric(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := registeredSeries(t)
	slices.Sort(metrics)
	for _, m := range metrics {
		if !strings.Contains(string(raw), "| `"+m+"` |") {
			t.Errorf("README.md's metrics table does not list %s", m)
		}
	}
}
