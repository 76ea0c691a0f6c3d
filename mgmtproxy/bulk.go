package mgmtproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// maxBulkItems bounds one bulk request.
const maxBulkItems = 100

// bulkResult is one item's outcome, at its input index, so a caller can retry exactly the failed ones.
type bulkResult struct {
	Index  int             `json:"index"`
	Status int             `json:"status"`
	ID     string          `json:"id,omitempty"`
	Error  json.RawMessage `json:"error,omitempty"`
}

// bulk serves POST /bulk/organizations ({"organizations":[{…}]}) and POST /bulk/organizations/delete
// ({"ids":[…]}): at most 100 items, run with bounded concurrency and paced under Logto's rate limit,
// answered 200 with one result per item in input order.
func (p *Proxy) bulk(w http.ResponseWriter, r *http.Request, req *request) {
	var in struct {
		Organizations []json.RawMessage `json:"organizations"`
		IDs           []json.RawMessage `json:"ids"`
	}
	dec := json.NewDecoder(bytes.NewReader(req.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || dec.More() {
		writeError(w, http.StatusBadRequest, "bad_request", "the body must be a JSON object")
		return
	}
	items, field := in.Organizations, "organizations"
	if req.op.action == bulkDelete {
		items, field = in.IDs, "ids"
		if in.Organizations != nil {
			items = nil
		}
	} else if in.IDs != nil {
		items = nil
	}
	if len(items) == 0 || len(items) > maxBulkItems {
		writeError(w, http.StatusBadRequest, "bad_request", "want \""+field+"\" with 1 to 100 items")
		return
	}
	// Without a token no item can succeed: refuse the whole request before calling anything.
	if err := p.tokens.ready(r.Context()); err != nil {
		p.proxyError(w, r, err)
		return
	}

	results := make([]bulkResult, len(items))
	sem := make(chan struct{}, p.cfg.BulkConcurrency)
	ctx, cancel := context.WithTimeout(r.Context(), 4*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i, item := range items {
		results[i].Index = i
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p.bulkItem(ctx, req.op.action, item, &results[i])
		})
	}
	wg.Wait()
	exchangeOf(r.Context()).bulkItems(results)
	if req.op.action == bulkDelete {
		var deleted []string
		for _, res := range results {
			if res.Status/100 == 2 {
				deleted = append(deleted, res.ID)
			}
		}
		p.revoke(r.Context(), req, deleted)
	}
	writeJSON(w, http.StatusOK, struct {
		Results []bulkResult `json:"results"`
	}{results})
}

// bulkItem performs one item and fills its result.
func (p *Proxy) bulkItem(ctx context.Context, act action, item json.RawMessage, res *bulkResult) {
	fail := func(status int, code, msg string) {
		res.Status = status
		res.Error, _ = json.Marshal(apiError{Code: code, Message: msg})
	}
	var method, path string
	var body []byte
	if act == bulkDelete {
		var id string
		if json.Unmarshal(item, &id) != nil || !isID(id) {
			fail(http.StatusBadRequest, "bad_request", "not an organization ID")
			return
		}
		method, path, res.ID = http.MethodDelete, "/api/organizations/"+id, id
	} else {
		if t := bytes.TrimSpace(item); len(t) == 0 || t[0] != '{' {
			fail(http.StatusBadRequest, "bad_request", "not a JSON object")
			return
		}
		method, path, body = http.MethodPost, "/api/organizations", item
	}
	if err := p.limiter.Wait(ctx); err != nil {
		fail(http.StatusServiceUnavailable, "not_attempted", "the bulk request ran out of time before this item")
		return
	}
	rep, err := p.call(ctx, method, path, body)
	if err != nil {
		status, code, msg := classify(err)
		fail(status, code, msg)
		return
	}
	res.Status = rep.status
	if rep.status/100 != 2 {
		res.Error = errorBody(rep)
		return
	}
	if act == bulkCreate {
		var org struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(rep.body, &org) == nil {
			res.ID = org.ID
		}
	}
}
