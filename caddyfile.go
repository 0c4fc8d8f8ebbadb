package twofactor

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Caddyfile support for the app (global option two_factor), the handler
// (directive two_factor) and their guest modules.

func init() {
	httpcaddyfile.RegisterGlobalOption("two_factor", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("two_factor", parseCaddyfile)
	// After forward_auth, so identity headers copied from the auth
	// response are in place; operators need no order line.
	httpcaddyfile.RegisterDirectiveOrder("two_factor", httpcaddyfile.After, "forward_auth")
}

// parseGlobalOption sets up the two_factor app from the global options
// block:
//
//	{
//		two_factor {
//			keys <key> [<older keys>...]
//			store embedded [<path>] | redis { ... }
//			totp_period <duration>
//			totp_skew <steps>
//			totp_digits <6|8>
//			totp_drift_window <duration>|off
//			max_failures <count>
//			max_address_failures <count>|off
//			failure_window <duration>
//			lockout <duration>
//			enrolment_timeout <duration>
//			email smtp|mailbox ...
//			sms sns|mailbox ...
//			phone_region <region>
//			phone_countries <region>...
//			email_code_ttl <duration>
//			sms_code_ttl <duration>
//			code_attempts <count>
//			resend_cooldown <duration>
//			hourly_sends_per_user <count>
//			hourly_sends_per_destination <count>
//			hourly_sends_per_address <count>|off
//			hourly_sms_site <count>
//			member_cache_size <count>
//			reset_approval <duration>|off
//			admins {
//				<id> viewer|support|approver
//				from_identity
//			}
//			admin_methods totp|webauthn...
//			instance_name <name>
//			audit_retention <duration>
//			weekly_report {
//				to <address>...
//				day monday|tuesday|...|sunday
//				hour <0-23>
//				non_delivery_threshold <0-1>
//				lang en|ja
//			}
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	d.Next() // option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	err := eachOption(d, 0, "two_factor", nil, func(name string) error {
		var err error
		switch name {
		case "keys":
			app.Keys = d.RemainingArgs()
			if len(app.Keys) == 0 {
				return d.Errf("keys: at least one key is required")
			}
		case "store":
			if !d.NextArg() {
				return d.ArgErr()
			}
			modName := d.Val()
			unm, err := caddyfile.UnmarshalModule(d, "two_factor.stores."+modName)
			if err != nil {
				return err
			}
			app.StoreRaw = caddyconfig.JSONModuleObject(unm, "type", modName, nil)
		case "totp_period":
			err = parseDuration(d, &app.TOTPPeriod)
		case "totp_skew":
			var n int
			err = parseInt(d, &n)
			app.TOTPSkew = &n
		case "totp_digits":
			err = parseInt(d, &app.TOTPDigits)
		case "totp_drift_window":
			var v caddy.Duration
			err = parseDurationOrOff(d, &v)
			app.TOTPDriftWindow = &v
		case "max_failures":
			err = parseInt(d, &app.MaxFailures)
		case "max_address_failures":
			err = parseCountOrOff(d, &app.MaxAddressFailures)
		case "email", "sms":
			if !d.NextArg() {
				return d.Errf("%s: expected a sender (%s)", name, map[string]string{"email": "smtp or mailbox", "sms": "sns or mailbox"}[name])
			}
			modName := d.Val()
			unm, err := caddyfile.UnmarshalModule(d, "two_factor.senders."+modName)
			if err != nil {
				return err
			}
			raw := caddyconfig.JSONModuleObject(unm, "sender", modName, nil)
			if name == "email" {
				app.EmailRaw = raw
			} else {
				app.SMSRaw = raw
			}
		case "phone_region":
			err = parseString(d, &app.PhoneRegion)
		case "phone_countries":
			app.PhoneCountries = d.RemainingArgs()
			if len(app.PhoneCountries) == 0 {
				return d.Errf("phone_countries: at least one region code is required")
			}
		case "email_code_ttl":
			err = parseDuration(d, &app.EmailCodeTTL)
		case "sms_code_ttl":
			err = parseDuration(d, &app.SMSCodeTTL)
		case "code_attempts":
			err = parseInt(d, &app.CodeAttempts)
		case "resend_cooldown":
			err = parseDuration(d, &app.ResendCooldown)
		case "hourly_sends_per_user":
			err = parseInt(d, &app.HourlySendsPerUser)
		case "hourly_sends_per_destination":
			err = parseInt(d, &app.HourlySendsPerDestination)
		case "hourly_sends_per_address":
			err = parseCountOrOff(d, &app.HourlySendsPerAddress)
		case "hourly_sms_site":
			err = parseInt(d, &app.HourlySMSSite)
		case "member_cache_size":
			err = parseInt(d, &app.MemberCacheSize)
		case "failure_window":
			err = parseDuration(d, &app.FailureWindow)
		case "lockout":
			err = parseDuration(d, &app.Lockout)
		case "max_lockout":
			err = parseDuration(d, &app.MaxLockout)
		case "enrolment_timeout":
			err = parseDuration(d, &app.EnrolmentTimeout)
		case "reset_approval":
			err = parseDurationOrOff(d, &app.ResetApproval)
		case "instance_name":
			err = parseString(d, &app.InstanceName)
		case "audit_retention":
			err = parseDuration(d, &app.AuditRetention)
		case "admins":
			err = parseAdmins(d, app)
		case "admin_methods":
			err = parseAdminMethods(d, app)
		case "weekly_report":
			err = parseWeeklyReport(d, app)
		default:
			return d.Errf("two_factor: unknown option %q", name)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "two_factor", Value: caddyconfig.JSON(app, nil)}, nil
}

// parseAdmins reads the admins block: one admin a line, an ID and a role,
// and from_identity alone on its line to take roles from the identity.
func parseAdmins(d *caddyfile.Dispenser, app *App) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return eachOption(d, d.Nesting(), "admins", nil, func(id string) error {
		args := d.RemainingArgs()
		if id == "from_identity" && len(args) == 0 {
			app.AdminRolesFromIdentity = true
			return nil
		}
		if len(args) != 1 {
			return d.Errf("admins: %s: expected one role (viewer, support or approver)", id)
		}
		app.Admins = append(app.Admins, AdminEntry{ID: id, Role: args[0]})
		return nil
	})
}

// parseAdminMethods reads "admin_methods totp|webauthn...", refusing
// codes by email or SMS when the Caddyfile is adapted, not only at load.
func parseAdminMethods(d *caddyfile.Dispenser, app *App) error {
	app.AdminMethods = d.RemainingArgs()
	if len(app.AdminMethods) == 0 {
		return d.Errf("admin_methods: expected totp, webauthn or both")
	}
	for _, m := range app.AdminMethods {
		if err := checkAdminMethod(m); err != nil {
			return d.Errf("%v", err)
		}
	}
	return nil
}

// UnmarshalCaddyfile sets up the embedded store:
//
//	store embedded [<path>]
func (s *EmbeddedStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() {
		s.Path = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("store embedded: unknown option %q", d.Val())
	}
	return nil
}

// UnmarshalCaddyfile sets up the Redis store:
//
//	store redis {
//		address <host:port>...
//		master_name <name>
//		sentinel_username <user>
//		sentinel_password <password>
//		username <user>
//		password <password>
//		db <number>
//		tls
//		ca_file <path>
//		key_prefix <prefix>
//		timeout <duration>
//		pool_size <count>
//	}
func (s *RedisStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() {
		return d.ArgErr()
	}
	return eachOption(d, d.Nesting(), "redis", map[string]bool{"address": true}, func(name string) error {
		switch name {
		case "address":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("redis: address needs at least one host:port")
			}
			s.Addresses = append(s.Addresses, args...)
			return nil
		case "master_name":
			return parseString(d, &s.MasterName)
		case "sentinel_username":
			return parseString(d, &s.SentinelUsername)
		case "sentinel_password":
			return parseString(d, &s.SentinelPassword)
		case "username":
			return parseString(d, &s.Username)
		case "password":
			return parseString(d, &s.Password)
		case "db":
			return parseInt(d, &s.DB)
		case "tls":
			if d.NextArg() {
				return d.ArgErr()
			}
			s.TLS = true
			return nil
		case "ca_file":
			return parseString(d, &s.CAFile)
		case "key_prefix":
			return parseString(d, &s.KeyPrefix)
		case "timeout":
			return parseDuration(d, &s.Timeout)
		case "pool_size":
			return parseInt(d, &s.PoolSize)
		case "lease_records":
			if d.NextArg() {
				return d.ArgErr()
			}
			s.LeaseRecords = true
			return nil
		}
		return d.Errf("redis: unknown option %q", name)
	})
}

// UnmarshalCaddyfile sets up the SMTP sender:
//
//	email smtp {
//		host <host>
//		port <port>
//		tls starttls|implicit|none
//		username <user>
//		password <password>
//		from <address>
//		timeout <duration>
//		ca_file <path>
//	}
func (s *SMTPSender) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() {
		return d.ArgErr()
	}
	return eachOption(d, d.Nesting(), "smtp", nil, func(name string) error {
		switch name {
		case "host":
			return parseString(d, &s.Host)
		case "port":
			return parseInt(d, &s.Port)
		case "tls":
			return parseString(d, &s.TLS)
		case "username":
			return parseString(d, &s.Username)
		case "password":
			return parseString(d, &s.Password)
		case "from":
			return parseString(d, &s.From)
		case "timeout":
			return parseDuration(d, &s.Timeout)
		case "ca_file":
			return parseString(d, &s.CAFile)
		}
		return d.Errf("smtp: unknown option %q", name)
	})
}

// UnmarshalCaddyfile sets up the SNS sender:
//
//	sms sns {
//		region <region>
//		access_key_id <id>
//		secret_access_key <secret>
//		session_token <token>
//		sender_id <id>
//		origination_number <+number>
//		endpoint <url>
//		timeout <duration>
//	}
func (s *SNSSender) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() {
		return d.ArgErr()
	}
	return eachOption(d, d.Nesting(), "sns", nil, func(name string) error {
		switch name {
		case "region":
			return parseString(d, &s.Region)
		case "access_key_id":
			return parseString(d, &s.AccessKeyID)
		case "secret_access_key":
			return parseString(d, &s.SecretAccessKey)
		case "session_token":
			return parseString(d, &s.SessionToken)
		case "sender_id":
			return parseString(d, &s.SenderID)
		case "origination_number":
			return parseString(d, &s.OriginationNumber)
		case "endpoint":
			return parseString(d, &s.Endpoint)
		case "timeout":
			return parseDuration(d, &s.Timeout)
		}
		return d.Errf("sns: unknown option %q", name)
	})
}

// UnmarshalCaddyfile sets up the development mailbox:
//
//	email mailbox <dir>
func (s *MailboxSender) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if !d.NextArg() {
		return d.Errf("mailbox: expected the directory to write messages to")
	}
	s.Dir = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("mailbox: unknown option %q", d.Val())
	}
	return nil
}

// parseCaddyfile sets up the handler from Caddyfile tokens:
//
//	two_factor [<matcher>] {
//		identity endpoint <url> | header <header or placeholder> {
//			session_cookie <name>
//			cache <duration>
//			cache_size <count>
//			timeout <duration>
//			id_case exact|fold
//			role_header <header or placeholder>
//		}
//		protect <paths...> {
//			except <paths...>
//			enrolment required|optional
//			enrolment required grace <duration>
//			enrolment required from <YYYY-MM-DD or RFC 3339 time>
//			remember_device <duration>|off [{
//				recheck_new_network
//			}]
//			methods totp|webauthn|email|sms...
//			reminder <duration>
//			networks <cidr...> {
//				second_factor skip|required
//				remember_device <duration>|off [{
//					recheck_new_network [on|off]
//				}]
//				methods totp|webauthn|email|sms...
//				enrolment required|optional
//				reminder <duration>
//			}
//		}
//		prefix <path>
//		login_url <path>
//		logout_url <path>
//		top_page <path>
//		site_name <name>
//		site_url <url>
//		new_device_notice on|off
//		trusted_networks <cidr...>
//		session_idle <duration>
//		session_lifetime <duration>
//		step_up <duration>
//		webauthn [{
//			user_verification preferred|required
//			attestation none|indirect|direct
//			aaguids <uuid...>
//			challenge_timeout <duration>
//		}]
//		templates <directory>
//	}
//
// protect may be repeated; the first matching rule applies. networks may
// be repeated; the first block with a range holding the client applies.
func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	return eachOption(d, 0, "two_factor", map[string]bool{"protect": true, "trusted_networks": true}, func(name string) error {
		var err error
		switch name {
		case "identity":
			err = h.unmarshalIdentity(d)
		case "protect":
			err = h.unmarshalRule(d)
		case "prefix":
			err = parseString(d, &h.Prefix)
		case "login_url":
			err = parseString(d, &h.LoginURL)
		case "logout_url":
			err = parseString(d, &h.LogoutURL)
		case "top_page":
			err = parseString(d, &h.TopPage)
		case "site_name":
			err = parseString(d, &h.SiteName)
		case "site_url":
			err = parseString(d, &h.SiteURL)
		case "new_device_notice":
			err = parseString(d, &h.NewDeviceNotice)
		case "trusted_networks":
			nets := d.RemainingArgs()
			h.TrustedNetworks = append(h.TrustedNetworks, nets...)
			if len(nets) == 0 {
				return d.Errf("trusted_networks: expected at least one address range")
			}
		case "session_idle":
			err = parseDuration(d, &h.SessionIdle)
		case "step_up":
			err = parseDuration(d, &h.StepUp)
		case "session_lifetime":
			err = parseDuration(d, &h.SessionLifetime)
		case "webauthn":
			err = h.unmarshalWebAuthn(d)
		case "templates":
			err = parseString(d, &h.Templates)
		default:
			return d.Errf("two_factor: unknown option %q", name)
		}
		return err
	})
}

func (h *Handler) unmarshalIdentity(d *caddyfile.Dispenser) error {
	id := &Identity{}
	if !d.NextArg() {
		return d.Errf("identity: expected a source (endpoint or header)")
	}
	id.Source = d.Val()
	switch id.Source {
	case "endpoint":
		if !d.NextArg() {
			return d.Errf("identity endpoint: expected the URL")
		}
		id.URL = d.Val()
	case "header":
		if !d.NextArg() {
			return d.Errf("identity header: expected a header name or placeholder")
		}
		id.Header = d.Val()
	default:
		return d.Errf("identity: unknown source %q (use endpoint or header)", id.Source)
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	err := eachOption(d, d.Nesting(), "identity", nil, func(name string) error {
		var err error
		switch name {
		case "session_cookie":
			err = parseString(d, &id.SessionCookie)
		case "cache":
			err = parseDuration(d, &id.Cache)
		case "cache_size":
			err = parseInt(d, &id.CacheSize)
		case "timeout":
			err = parseDuration(d, &id.Timeout)
		case "id_case":
			err = parseString(d, &id.IDCase)
		case "role_header":
			err = parseString(d, &id.RoleHeader)
		default:
			return d.Errf("identity: unknown option %q", name)
		}
		return err
	})
	if err != nil {
		return err
	}
	h.Identity = id
	return nil
}

func (h *Handler) unmarshalRule(d *caddyfile.Dispenser) error {
	rule := &Rule{Paths: d.RemainingArgs()}
	if len(rule.Paths) == 0 {
		return d.Errf("protect: expected at least one path pattern")
	}
	err := eachOption(d, d.Nesting(), "protect", map[string]bool{"networks": true}, func(name string) error {
		var err error
		switch name {
		case "except":
			rule.Except = d.RemainingArgs()
			if len(rule.Except) == 0 {
				return d.Errf("protect: except needs at least one path pattern")
			}
		case "enrolment":
			err = parseEnrolment(d, rule)
		case "remember_device":
			var recheck *bool
			if recheck, err = parseRememberDevice(d, "protect", &rule.RememberDevice); recheck != nil {
				rule.RecheckNewNetwork = *recheck
			}
		case "reminder":
			err = parseDuration(d, &rule.Reminder)
		case "methods":
			rule.Methods, err = parseMethods(d, "protect")
		case "networks":
			err = unmarshalNetworks(d, rule)
		default:
			return d.Errf("protect: unknown option %q", name)
		}
		return err
	})
	if err != nil {
		return err
	}
	h.Protect = append(h.Protect, rule)
	return nil
}

// unmarshalNetworks reads one networks block of a protect rule:
//
//	networks <cidr...> {
//		second_factor skip|required
//		remember_device <duration>|off [{
//			recheck_new_network [on|off]
//		}]
//		methods totp|webauthn|email|sms...
//		enrolment required|optional
//		reminder <duration>
//	}
func unmarshalNetworks(d *caddyfile.Dispenser, rule *Rule) error {
	n := &NetworkPolicy{Ranges: d.RemainingArgs()}
	if len(n.Ranges) == 0 {
		return d.Errf("protect: networks: expected at least one address range (CIDR)")
	}
	for _, r := range n.Ranges {
		if _, err := parseRange(r); err != nil {
			return d.Errf("protect: networks %q: %v", r, err)
		}
	}
	err := eachOption(d, d.Nesting(), "networks", nil, func(name string) error {
		var err error
		switch name {
		case "second_factor":
			err = parseString(d, &n.SecondFactor)
		case "remember_device":
			n.RecheckNewNetwork, err = parseRememberDevice(d, "networks", &n.RememberDevice)
		case "methods":
			n.Methods, err = parseMethods(d, "networks")
		case "enrolment":
			args := d.RemainingArgs()
			if len(args) != 1 {
				return d.Errf("networks: enrolment: expected required or optional (a deadline, grace or from, is the rule's)")
			}
			n.Enrolment = args[0]
		case "reminder":
			err = parseDuration(d, &n.Reminder)
		default:
			return d.Errf("networks: unknown option %q", name)
		}
		return err
	})
	if err != nil {
		return err
	}
	rule.Networks = append(rule.Networks, n)
	return nil
}

// parseRememberDevice reads "remember_device <duration>|off", with an
// optional block { recheck_new_network [on|off] }; the recheck is nil when
// the block does not say.
func parseRememberDevice(d *caddyfile.Dispenser, block string, dst *string) (*bool, error) {
	if err := parseString(d, dst); err != nil {
		return nil, err
	}
	if _, err := parseRemember(*dst); err != nil {
		return nil, d.Errf("%s: %v", block, err)
	}
	var recheck *bool
	err := eachOption(d, d.Nesting(), "remember_device", nil, func(name string) error {
		if name != "recheck_new_network" {
			return d.Errf("remember_device: unknown option %q (only recheck_new_network)", name)
		}
		on := true
		if d.NextArg() {
			switch d.Val() {
			case "on":
			case "off":
				on = false
			default:
				return d.Errf("remember_device: recheck_new_network %q: expected on or off", d.Val())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		}
		if on && *dst == "off" {
			return d.Errf("%s: recheck_new_network: needs remember_device (not off), whose devices it rechecks", block)
		}
		recheck = &on
		return nil
	})
	return recheck, err
}

// parseMethods reads a methods line.
func parseMethods(d *caddyfile.Dispenser, block string) ([]string, error) {
	methods := d.RemainingArgs()
	if len(methods) == 0 {
		return nil, d.Errf("%s: methods needs at least one of totp, webauthn, email, sms", block)
	}
	return methods, nil
}

// parseEnrolment reads "enrolment required|optional", or "enrolment
// required grace <duration>" or "enrolment required from <date>".
func parseEnrolment(d *caddyfile.Dispenser, rule *Rule) error {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1:
		rule.Enrolment = args[0]
		return nil
	case len(args) != 3:
		return d.Errf("protect: enrolment: expected required, optional, required grace <duration> or required from <date>")
	case args[0] != enrolmentRequired:
		return d.Errf("protect: enrolment %s %s: a deadline needs enrolment required", args[0], args[1])
	}
	rule.Enrolment = args[0]
	switch args[1] {
	case "grace":
		v, err := caddy.ParseDuration(args[2])
		if err != nil {
			return d.Errf("protect: enrolment required grace: bad duration %q: %v", args[2], err)
		}
		rule.EnrolmentGrace = caddy.Duration(v)
	case "from":
		if _, err := parseEnrolmentFrom(args[2]); err != nil {
			return d.Errf("protect: %v", err)
		}
		rule.EnrolmentFrom = args[2]
	default:
		return d.Errf("protect: enrolment required %s: expected grace <duration> or from <date>", args[1])
	}
	return nil
}

// eachOption calls each for every subdirective of the block at nesting,
// refusing one given twice unless repeatable names it.
func eachOption(d *caddyfile.Dispenser, nesting int, block string, repeatable map[string]bool, each func(name string) error) error {
	seen := map[string]bool{}
	for d.NextBlock(nesting) {
		name := d.Val()
		if seen[name] && !repeatable[name] {
			return d.Errf("%s: %s given twice", block, name)
		}
		seen[name] = true
		if err := each(name); err != nil {
			return err
		}
	}
	return nil
}

func parseString(d *caddyfile.Dispenser, dst *string) error {
	name := d.Val()
	if !d.NextArg() {
		return d.Errf("%s: expected a value", name)
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.Errf("%s: expected one value", name)
	}
	return nil
}

func parseDuration(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	return parseDurationOff(d, dst, false)
}

// parseDurationOrOff reads a duration, or "off" as 0.
func parseDurationOrOff(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	return parseDurationOff(d, dst, true)
}

func parseDurationOff(d *caddyfile.Dispenser, dst *caddy.Duration, off bool) error {
	name := d.Val()
	var s string
	if err := parseString(d, &s); err != nil {
		return err
	}
	if off && s == "off" {
		*dst = 0
		return nil
	}
	v, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("%s: bad duration %q: %v", name, s, err)
	}
	*dst = caddy.Duration(v)
	return nil
}

// parseCountOrOff reads a positive count, or "off" as -1.
func parseCountOrOff(d *caddyfile.Dispenser, dst *int) error {
	name := d.Val()
	args := d.RemainingArgs()
	if len(args) != 1 {
		return d.Errf("%s: expected a number or off", name)
	}
	if args[0] == "off" {
		*dst = -1
		return nil
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return d.Errf("%s: bad number %q", name, args[0])
	}
	*dst = n
	return nil
}

func parseInt(d *caddyfile.Dispenser, dst *int) error {
	name := d.Val()
	var s string
	if err := parseString(d, &s); err != nil {
		return err
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return d.Errf("%s: bad number %q", name, s)
	}
	*dst = v
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*EmbeddedStore)(nil)
	_ caddyfile.Unmarshaler = (*RedisStore)(nil)
	_ caddyfile.Unmarshaler = (*SMTPSender)(nil)
	_ caddyfile.Unmarshaler = (*SNSSender)(nil)
	_ caddyfile.Unmarshaler = (*MailboxSender)(nil)
)
