package flow

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/challenge"
)

// Who is an admin, and the guards of the admin pages. The Caddy layer
// resolves the role (from the app's admins list or, when the operator opts
// in, from the identity) and hands it over in Identity.Role; here it is
// only compared.

// The admin roles, from least to most.
const (
	// RoleViewer reads: the member list, a member's page, reconcile.
	RoleViewer = "viewer"
	// RoleSupport also acts on a member: unlock, forget devices, end
	// sessions, reset (or request one, where resets need approval).
	RoleSupport = "support"
	// RoleApprover also approves another admin's reset request.
	RoleApprover = "approver"
)

// Roles lists the admin roles, least first.
var Roles = []string{RoleViewer, RoleSupport, RoleApprover}

// roleRank orders the roles; 0 for anything else, which grants nothing.
// Only the exact names count: "Admin", "SUPPORT" or " viewer" are no role.
func roleRank(role string) int {
	return slices.Index(Roles, role) + 1
}

// ValidRole reports whether role is one of Roles, exactly.
func ValidRole(role string) bool { return roleRank(role) > 0 }

// DefaultAdminMethods are the second factors the admin pages accept
// unless configured otherwise (Config.AdminMethods): the authenticator
// app, which a stolen password with a mailbox or phone number cannot pass.
var DefaultAdminMethods = []string{challenge.MethodTOTP}

// adminMethods are the second factors this site's admin pages accept.
func (f *Flow) adminMethods() []string { return f.adminPolicy.Methods }

// adminMethod reports whether a session verified by method may open the
// admin pages.
func (f *Flow) adminMethod(method string) bool { return slices.Contains(f.adminMethods(), method) }

// hasAdminMethod reports whether the member has a factor that opens the
// admin pages.
func (f *Flow) hasAdminMethod(u *challenge.User) bool {
	return slices.ContainsFunc(f.adminMethods(), u.Has)
}

// minRole is the role an admin route asks for.
func (rt *route) minRole() string {
	switch {
	case rt.guards&adminApprove != 0:
		return RoleApprover
	case rt.guards&adminSupport != 0:
		return RoleSupport
	case rt.guards&adminView != 0:
		return RoleViewer
	}
	return ""
}

// checkAdminGuards is the router's check of a route's admin guards.
func checkAdminGuards(r *route) error {
	roles := r.guards & adminRoles
	isAdmin := strings.HasPrefix(r.path, "admin/")
	switch {
	case isAdmin && roles == 0:
		return errors.New("an admin page needs an admin role guard")
	case !isAdmin && (roles != 0 || r.guards&adminStepUp != 0):
		return errors.New("admin guards belong to pages under admin/")
	case roles&(roles-1) != 0:
		return errors.New("one minimum admin role, not several")
	case isAdmin && r.guards&adminStepUp == 0:
		return errors.New("an admin page needs the admin step-up")
	case isAdmin && r.guards&(enrolled|stepUp|mayEnrol|stepUpOrRenewal) != 0:
		return errors.New("admin step-up is instead of the member guards")
	}
	return nil
}

// AdminRoute is one admin page or action, for tests and documentation.
type AdminRoute struct {
	Method string // GET or POST
	Path   string // below the prefix, such as "admin/member/reset"
	Role   string // the least role that may use it
}

// AdminRoutes lists every admin route of the table.
func AdminRoutes() []AdminRoute {
	var out []AdminRoute
	for i := range routes {
		if r := &routes[i]; r.guards&adminRoles != 0 {
			out = append(out, AdminRoute{Method: r.method, Path: r.path, Role: r.minRole()})
		}
	}
	return out
}

// adminAllowed answers 403 (and reports false) unless the member's role
// reaches the route's. Members who are no admin get the same page as any
// forbidden path, which says nothing of the admin pages.
func (f *Flow) adminAllowed(p *request, rt *route) bool {
	have, want := roleRank(p.id.Role), roleRank(rt.minRole())
	if have >= want {
		return true
	}
	p.e.Audit(f.actor(p.r, p.id.ID), "admin_refused", "refused", zap.String("page", rt.path),
		zap.String("role", p.id.Role), zap.String("needs", rt.minRole()))
	msg := "forbidden"
	if have > 0 {
		msg = "admin_role_too_low"
	}
	_ = f.message(p.w, p.r, http.StatusForbidden, "title_forbidden", msg, nil, "")
	return false
}

// adminStepUp applies the admin step-up guard once the member's record
// is loaded: an admin without an admin method is told to add one; one
// without a fresh session verified with it goes to the challenge.
func (f *Flow) adminStepUp(p *request, rt *route) (bool, error) {
	if !f.hasAdminMethod(p.user) {
		p.page.Title, p.page.Message = "title_forbidden", f.adminNeeds()
		p.page.Link, p.page.LinkLabel = f.cfg.Prefix+"methods?return_to="+url.QueryEscape(f.cfg.Prefix+"admin/"), "admin_add_app"
		return true, f.render(p, http.StatusForbidden, "message")
	}
	if !slices.ContainsFunc(f.adminMethods(), p.user.Proven) {
		// Added after an email or recovery code, or after a reset: what a
		// stolen password with a mailbox does. Another admin confirms it.
		p.e.Audit(f.actor(p.r, p.id.ID), "admin_refused", "refused", zap.String("page", rt.path),
			zap.String("role", p.id.Role), zap.String("reason", "app_unproven"))
		p.page.Title, p.page.Message = "title_forbidden", "admin_app_unproven"
		if !f.adminMethod(challenge.MethodTOTP) || !p.user.Has(challenge.MethodTOTP) {
			p.page.Message = "admin_passkey_unproven"
		}
		return true, f.render(p, http.StatusForbidden, "message")
	}
	s, ok := f.stepUpSession(p, false)
	if !ok || !f.adminMethod(s.Method) || !sessionProven(p.user, s) {
		return true, seeOther(p, f.cfg.Prefix+"challenge?return_to="+url.QueryEscape(f.adminBack(p, rt)))
	}
	p.session = s
	return false, nil
}

// adminNeeds is the message to an admin who has none of the admin
// methods: which one to add.
func (f *Flow) adminNeeds() string {
	switch m := f.adminMethods(); {
	case len(m) > 1:
		return "admin_needs_app_or_passkey"
	case m[0] == challenge.MethodWebAuthn:
		return "admin_needs_passkey"
	}
	return "admin_needs_app"
}

// adminBack is the admin page to come back to after the challenge: the
// page itself, or for a post the page its form was on.
func (f *Flow) adminBack(p *request, rt *route) string {
	if rt.method != http.MethodPost {
		return p.r.URL.RequestURI()
	}
	member := p.r.PostForm.Get("member")
	if member != "" && (strings.HasPrefix(rt.path, "admin/member/") || strings.HasPrefix(rt.path, "admin/approvals/")) {
		return f.memberURL(member)
	}
	if strings.HasPrefix(rt.path, "admin/approvals/") {
		return f.cfg.Prefix + "admin/approvals"
	}
	if rt.path == "admin/reconcile" {
		return f.cfg.Prefix + "admin/reconcile"
	}
	return f.membersURL()
}

// membersURL is the member list's address.
func (f *Flow) membersURL() string {
	return f.cfg.Prefix + "admin/members"
}

func (f *Flow) memberURL(id string) string {
	return f.cfg.Prefix + "admin/member?id=" + url.QueryEscape(id)
}

// adminActor names the acting admin in the audit trail and the member's
// activity: their ID and role.
func (p *request) adminActor() string {
	return fmt.Sprintf("%s (%s)", p.id.ID, p.id.Role)
}
