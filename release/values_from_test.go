package release

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// valuesFromFile is a valid release file; tests replace the marked lines.
const valuesFromFile = `apiVersion: keelson.dev/v1alpha1
kind: Release
application: api
chart: {path: chart, versionValue: image.tag}
values:
  db: {host: db.internal}
valuesFrom:
  - {key: db.password, env: KEELSON_VALUE_DB_PASSWORD, secret: true}
  - {key: license, file: /var/run/secrets/api/license}
regions:
  - name: r1
    kubeContext: c1
    namespace: api
    valuesFrom:
      - {key: db.password, file: /var/run/secrets/r1/db-password, secret: true}
      - {key: region.token, env: KEELSON_VALUE_R1_TOKEN}
  - name: r2
    kubeContext: c2
    namespace: api
waves:
  - {name: all, regions: [r1, r2]}
`

func TestValuesFromLoads(t *testing.T) {
	source := filepath.Join("testdata", "good", "values-from.yaml")
	s, err := Parse([]byte(valuesFromFile), source)
	if err != nil {
		t.Fatal(err)
	}
	app := []ValueFrom{
		{Key: "db.password", Env: "KEELSON_VALUE_DB_PASSWORD", Secret: true},
		{Key: "license", File: "/var/run/secrets/api/license"},
	}
	if !reflect.DeepEqual(s.ValuesFrom, app) {
		t.Errorf("valuesFrom = %+v, want %+v", s.ValuesFrom, app)
	}
	// The file is a path on the worker: loading leaves it as written.
	if got := s.ValuesFromFor(s.Regions[0]); !reflect.DeepEqual(got, []ValueFrom{
		{Key: "db.password", File: "/var/run/secrets/r1/db-password", Secret: true},
		{Key: "license", File: "/var/run/secrets/api/license"},
		{Key: "region.token", Env: "KEELSON_VALUE_R1_TOKEN"},
	}) {
		t.Errorf("r1's valuesFrom = %+v", got)
	}
	if got := s.ValuesFromFor(s.Regions[1]); !reflect.DeepEqual(got, app) {
		t.Errorf("r2's valuesFrom = %+v, want the application's", got)
	}
	if err := s.Validate(); err != nil {
		t.Errorf("completed spec does not validate: %v", err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Spec
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*s, back) {
		t.Errorf("spec changed through JSON:\nbefore %#v\nafter  %#v", *s, back)
	}
}

func TestMergeValuesFrom(t *testing.T) {
	a := ValueFrom{Key: "a", Env: "A"}
	b := ValueFrom{Key: "b", Env: "B"}
	b2 := ValueFrom{Key: "b", File: "/b", Secret: true}
	c := ValueFrom{Key: "c", Env: "C"}
	for _, tc := range []struct {
		app, region, want []ValueFrom
	}{
		{nil, nil, nil},
		{[]ValueFrom{a, b}, nil, []ValueFrom{a, b}},
		{nil, []ValueFrom{c}, []ValueFrom{c}},
		{[]ValueFrom{a, b}, []ValueFrom{c, b2}, []ValueFrom{a, b2, c}},
	} {
		if got := MergeValuesFrom(tc.app, tc.region); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("MergeValuesFrom(%v, %v) = %v, want %v", tc.app, tc.region, got, tc.want)
		}
	}
	// The inputs are not changed.
	app := []ValueFrom{a, b}
	MergeValuesFrom(app, []ValueFrom{b2})
	if app[1] != b {
		t.Errorf("MergeValuesFrom changed its input: %v", app)
	}
}

// TestValuesFromErrors checks each problem's whole message, placed at
// its line, column and field.
func TestValuesFromErrors(t *testing.T) {
	file := filepath.Join("testdata", "good", "values-from.yaml") // beside the good file's chart
	for _, tc := range []struct {
		name     string
		old, new string // replaced in valuesFromFile
		want     string // after the file name
	}{
		{
			name: "no key",
			old:  "{key: license, file:", new: "{file:",
			want: `:9:5: valuesFrom[1].key: required field is missing (the dotted values key, such as db.password)`,
		},
		{
			name: "bad key",
			old:  "key: license,", new: "key: license..text,",
			want: `:9:11: valuesFrom[1].key: "license..text" is not a dotted values key such as db.password`,
		},
		{
			name: "neither env nor file",
			old:  "{key: license, file: /var/run/secrets/api/license}", new: "{key: license, secret: true}",
			want: `:9:5: valuesFrom[1]: give env (an environment variable of the worker) or file (an absolute path on the worker)`,
		},
		{
			name: "env and file",
			old:  "env: KEELSON_VALUE_DB_PASSWORD,", new: "env: KEELSON_VALUE_DB_PASSWORD, file: /run/db,",
			want: `:8:62: valuesFrom[0].file: give either env or file, not both`,
		},
		{
			name: "bad env name",
			old:  "env: KEELSON_VALUE_DB_PASSWORD,", new: "env: DB-PASSWORD,",
			want: `:8:29: valuesFrom[0].env: "DB-PASSWORD" is not an environment variable name (letters, digits and '_', not starting with a digit)`,
		},
		{
			name: "relative file",
			old:  "file: /var/run/secrets/api/license", new: "file: secrets/license",
			want: `:9:26: valuesFrom[1].file: "secrets/license" is not absolute: file is a path on the worker (a mounted Secret, say), read when the chart renders, not a file beside the release file`,
		},
		{
			name: "duplicate key",
			old:  "key: license,", new: "key: db.password,",
			want: `:9:11: valuesFrom[1].key: duplicate key "db.password" (also valuesFrom[0])`,
		},
		{
			name: "keys overlap",
			old:  "key: db.password, env", new: "key: license.text, env",
			want: `:9:11: valuesFrom[1].key: "license" overlaps "license.text" (valuesFrom[0]): one would replace the other`,
		},
		{
			name: "also in plain values",
			old:  "db: {host: db.internal}", new: "db: {host: db.internal, password: changeme}",
			want: `:8:11: valuesFrom[0].key: "db.password" is also set in values at the same level: give it in one place`,
		},
		{
			name: "region key also in region values",
			old:  "    namespace: api\n    valuesFrom:", new: "    namespace: api\n    values: {region: {token: x}}\n    valuesFrom:",
			want: `:17:15: regions[0].valuesFrom[1].key: "region.token" is also set in values at the same level: give it in one place`,
		},
		{
			name: "version key",
			old:  "key: license,", new: "key: image,",
			want: `:9:11: valuesFrom[1].key: "image" overlaps "image.tag", where the release's version goes (chart.versionValue)`,
		},
		{
			name: "region overlaps application",
			old:  "key: region.token,", new: "key: license.part,",
			want: `:16:15: regions[0].valuesFrom[1].key: "license.part" overlaps "license" (valuesFrom[1]): one would replace the other; use the same key to replace the application's entry`,
		},
		{
			name: "region relative file",
			old:  "file: /var/run/secrets/r1/db-password", new: "file: ./db-password",
			want: `:15:34: regions[0].valuesFrom[0].file: "./db-password" is not absolute: file is a path on the worker (a mounted Secret, say), read when the chart renders, not a file beside the release file`,
		},
		{
			name: "worker variable not meant for charts",
			old:  "env: KEELSON_VALUE_DB_PASSWORD", new: "env: AWS_SECRET_ACCESS_KEY",
			want: `:8:29: valuesFrom[0].env: "AWS_SECRET_ACCESS_KEY": workers give charts only the variables named KEELSON_VALUE_*, so that a release file cannot read the worker's own credentials`,
		},
		{
			name: "unknown key",
			old:  "secret: true}\n  - {key: license", new: "secrets: true}\n  - {key: license",
			want: `:8:56: valuesFrom[0].secrets: unknown key "secrets" (did you mean "secret"?)`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(valuesFromFile, tc.old) {
				t.Fatalf("%q is not in the file", tc.old)
			}
			data := strings.Replace(valuesFromFile, tc.old, tc.new, 1)
			_, err := Parse([]byte(data), file)
			if err == nil {
				t.Fatalf("loaded without error:\n%s", data)
			}
			if got, want := err.Error(), file+tc.want; got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}
