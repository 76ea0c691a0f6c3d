// Package confload fills a binary's documented Config struct from, in rising order of precedence, a YAML
// file, ORGAUTHZ_* environment variables and command-line flags. Both orgauthz binaries use it, so every
// setting has one name: the flag name, which is also the YAML key, and upper-cased with "_" for "-" behind
// the ORGAUTHZ_ prefix, the environment variable.
//
// A field takes part when it has a `flag` tag:
//
//	GRPCAddr string `flag:"grpc-addr" usage:"gRPC ext_authz listen address"`
//
// `flag:"-"` with an `env` tag makes a setting that only the environment or the file may set (secrets).
// Supported field types: string, []string (repeatable flag, comma-separated variable, YAML list), bool,
// int, float64 and time.Duration. CheckTransport and CheckHostPort are checks both binaries'
// Validate share.
package confload

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// EnvPrefix starts every environment variable name.
const EnvPrefix = "ORGAUTHZ_"

// maxFileBytes bounds the YAML config file.
const maxFileBytes = 1 << 20

// Options says where Load reads from.
type Options struct {
	Name   string              // program name, for usage
	Args   []string            // command-line arguments without the program name
	Getenv func(string) string // os.Getenv when nil
	Output io.Writer           // usage and flag errors; os.Stderr when nil
	About  string              // printed above the flag list by --help
	Check  string              // what --check does, for --help; "validate the configuration, then exit" when empty
}

// Result says what Load found beyond the Config itself.
type Result struct {
	Check      bool   // --check: validate and exit
	ConfigFile string // the YAML file read, if any
}

type field struct {
	name, env, usage string
	value            reflect.Value
	noFlag           bool
}

// Load fills cfg, a pointer to a struct whose current values are the defaults. It returns flag.ErrHelp
// after printing usage for -h/--help, and otherwise every problem it found, joined: a bad flag,
// environment variable or file key does not stop it, so cfg holds every other setting and the
// caller can validate it to report the rest. After a bad flag it prints the usage once; it never
// prints the errors, which the caller reports.
func Load(cfg any, opt Options) (Result, error) {
	getenv := opt.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	out := opt.Output
	if out == nil {
		out = os.Stderr
	}
	fields, err := fieldsOf(cfg)
	if err != nil {
		return Result{}, err
	}

	var res Result
	fs := flag.NewFlagSet(opt.Name, flag.ContinueOnError)
	// The flag package would print each parse error and the usage after it; Load returns the
	// errors instead and prints the usage once.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&res.ConfigFile, "config", getenv(EnvPrefix+"CONFIG"), "YAML config file; keys are the flag names (env "+EnvPrefix+"CONFIG)")
	checkUsage := opt.Check
	if checkUsage == "" {
		checkUsage = "validate the configuration, then exit"
	}
	fs.BoolVar(&res.Check, "check", false, checkUsage)
	given := map[string][]string{}
	for _, f := range fields {
		if f.noFlag {
			continue
		}
		r := &recorder{name: f.name, given: given, def: current(f.value), isBool: f.value.Kind() == reflect.Bool}
		fs.Var(r, f.name, f.usage+" (env "+f.env+")")
	}
	usage := func() {
		if opt.About != "" {
			fmt.Fprintln(out, strings.TrimSpace(opt.About))
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "Usage of %s:\n", opt.Name)
		fs.SetOutput(out)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		var envOnly []string
		for _, f := range fields {
			if f.noFlag {
				envOnly = append(envOnly, fmt.Sprintf("  %s (config file key %s)\n    \t%s", f.env, f.name, f.usage))
			}
		}
		if len(envOnly) > 0 {
			fmt.Fprintf(out, "Environment only (or the config file):\n%s\n", strings.Join(envOnly, "\n"))
		}
	}

	// Parse every flag, going on past a bad one, so that one run reports every problem.
	var errs []error
	args := opt.Args
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			usage()
			return res, err
		}
		if err == nil {
			break
		}
		errs = append(errs, fmt.Errorf("confload: %w", err))
		args = fs.Args()
		if strings.HasPrefix(err.Error(), "bad flag syntax") { // the one error that leaves its argument
			args = args[1:]
		}
	}
	if len(errs) > 0 {
		usage()
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("confload: unexpected arguments %q", fs.Args()))
	}

	if res.ConfigFile != "" {
		errs = append(errs, loadFile(res.ConfigFile, fields)...)
	}
	for _, f := range fields {
		if v := getenv(f.env); v != "" {
			var vals []string
			if f.value.Kind() == reflect.Slice {
				vals = splitList(v)
			} else {
				vals = []string{v}
			}
			if err := set(f.value, vals); err != nil {
				errs = append(errs, fmt.Errorf("confload: %s: %w", f.env, err))
			}
		}
	}
	for _, f := range fields {
		if vals, ok := given[f.name]; ok {
			if err := set(f.value, vals); err != nil {
				errs = append(errs, fmt.Errorf("confload: --%s: %w", f.name, err))
			}
		}
	}
	return res, errors.Join(errs...)
}

func fieldsOf(cfg any) ([]field, error) {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("confload: want a pointer to a struct, got %T", cfg)
	}
	v = v.Elem()
	var fields []field
	for i := range v.NumField() {
		sf := v.Type().Field(i)
		name, ok := sf.Tag.Lookup("flag")
		if !ok {
			continue
		}
		f := field{name: name, usage: sf.Tag.Get("usage"), value: v.Field(i), env: sf.Tag.Get("env")}
		if name == "-" {
			f.noFlag, f.name = true, strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(f.env, EnvPrefix), "_", "-"))
		}
		if f.env == "" {
			f.env = EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		}
		if _, err := parse(f.value.Type(), "", true); err != nil {
			return nil, fmt.Errorf("confload: field %s: %w", sf.Name, err)
		}
		fields = append(fields, f)
	}
	return fields, nil
}

func loadFile(path string, fields []field) []error {
	file, err := os.Open(path)
	if err != nil {
		return []error{fmt.Errorf("confload: config file: %w", err)}
	}
	defer file.Close()
	raw, err := io.ReadAll(io.LimitReader(file, maxFileBytes+1))
	if err != nil {
		return []error{fmt.Errorf("confload: config file: %w", err)}
	}
	if len(raw) > maxFileBytes {
		return []error{fmt.Errorf("confload: config file %s is larger than %d bytes", path, maxFileBytes)}
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return []error{fmt.Errorf("confload: config file %s: %w", path, err)}
	}
	byName := map[string]field{}
	for _, f := range fields {
		byName[f.name] = f
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		f, ok := byName[k]
		if !ok {
			errs = append(errs, fmt.Errorf("confload: config file %s: unknown key %q", path, k))
			continue
		}
		var vals []string
		switch x := doc[k].(type) {
		case []any:
			for _, e := range x {
				vals = append(vals, fmt.Sprint(e))
			}
		case map[string]any, nil:
			errs = append(errs, fmt.Errorf("confload: config file %s: key %q: want a value or a list", path, k))
			continue
		default:
			vals = []string{fmt.Sprint(x)}
		}
		if err := set(f.value, vals); err != nil {
			errs = append(errs, fmt.Errorf("confload: config file %s: key %q: %w", path, k, err))
		}
	}
	return errs
}

// set stores vals in v: all of them for a slice, exactly one otherwise.
func set(v reflect.Value, vals []string) error {
	if v.Kind() == reflect.Slice {
		out := reflect.MakeSlice(v.Type(), 0, len(vals))
		for _, s := range vals {
			e, err := parse(v.Type().Elem(), s, false)
			if err != nil {
				return err
			}
			out = reflect.Append(out, e)
		}
		v.Set(out)
		return nil
	}
	if len(vals) != 1 {
		return fmt.Errorf("given %d times, want once", len(vals))
	}
	e, err := parse(v.Type(), vals[0], false)
	if err != nil {
		return err
	}
	v.Set(e)
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

// parse converts s to a value of type t; with probe it only says whether t is supported.
func parse(t reflect.Type, s string, probe bool) (reflect.Value, error) {
	if t.Kind() == reflect.Slice && probe {
		return parse(t.Elem(), s, true)
	}
	var (
		x   any
		err error
	)
	switch {
	case t == durationType:
		if probe {
			return reflect.Value{}, nil
		}
		x, err = time.ParseDuration(s)
	case t.Kind() == reflect.String:
		x = s
	case t.Kind() == reflect.Bool:
		if probe {
			return reflect.Value{}, nil
		}
		x, err = strconv.ParseBool(s)
	case t.Kind() == reflect.Int:
		if probe {
			return reflect.Value{}, nil
		}
		x, err = strconv.Atoi(s)
	case t.Kind() == reflect.Float64:
		if probe {
			return reflect.Value{}, nil
		}
		x, err = strconv.ParseFloat(s, 64)
	default:
		return reflect.Value{}, fmt.Errorf("unsupported type %s", t)
	}
	if probe {
		return reflect.Value{}, nil
	}
	if err != nil {
		return reflect.Value{}, fmt.Errorf("invalid value %q for %s", s, t)
	}
	return reflect.ValueOf(x).Convert(t), nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func current(v reflect.Value) string {
	if v.Kind() == reflect.Slice {
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = fmt.Sprint(v.Index(i).Interface())
		}
		return strings.Join(parts, ",")
	}
	if v.IsZero() {
		return ""
	}
	return fmt.Sprint(v.Interface())
}

// recorder remembers every value a flag was given; Load applies them after the file and the environment.
type recorder struct {
	name   string
	given  map[string][]string
	def    string
	isBool bool
}

// IsBoolFlag lets a bool setting be given as a bare --name.
func (r *recorder) IsBoolFlag() bool { return r.isBool }

func (r *recorder) String() string {
	if r == nil {
		return ""
	}
	return r.def
}

func (r *recorder) Set(s string) error {
	r.given[r.name] = append(r.given[r.name], s)
	return nil
}
