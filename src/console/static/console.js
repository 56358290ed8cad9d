// The jit-broker console's only script of its own (served as /console/static/console.js;
// the Content-Security-Policy allows no inline script). It runs the passkey ceremonies
// (enrolment, sign-in, step-up inside Approve and Revoke all) with @simplewebauthn/browser
// (window.SimpleWebAuthnBrowser, /console/static/webauthn.js) and keeps the pending list
// live over /console/events. Without it every page still reads, and Approve/Deny forms
// that need no step-up still post.
(function () {
  'use strict';

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute('content') : '';
  }

  function say(el, text) {
    if (el) el.textContent = text;
  }

  function errorText(err) {
    if (err && err.name === 'NotAllowedError') return 'the passkey prompt was cancelled or timed out';
    return (err && err.message) || String(err);
  }

  async function post(url, body, type) {
    var headers = { accept: 'application/json' };
    var token = csrf();
    if (token) headers['x-csrf-token'] = token;
    if (type) headers['content-type'] = type;
    var res = await fetch(url, { method: 'POST', headers: headers, body: body, credentials: 'same-origin' });
    var data = {};
    try {
      data = await res.json();
    } catch (e) {
      /* not JSON */
    }
    if (!res.ok) throw new Error(data.detail || 'HTTP ' + res.status);
    return data;
  }

  function postJson(url, value) {
    return post(url, value === undefined ? undefined : JSON.stringify(value), value === undefined ? undefined : 'application/json');
  }

  function webauthn() {
    var w = window.SimpleWebAuthnBrowser;
    if (!w || !w.browserSupportsWebAuthn()) throw new Error('this browser does not support passkeys (WebAuthn)');
    return w;
  }

  // Enrolment and sign-in: buttons with data-ceremony.
  document.addEventListener('click', async function (event) {
    var button = event.target instanceof Element ? event.target.closest('button[data-ceremony]') : null;
    if (!button) return;
    var status = document.getElementById('ceremony-status');
    button.disabled = true;
    try {
      var w = webauthn();
      say(status, 'Waiting for your passkey…');
      var done;
      if (button.getAttribute('data-ceremony') === 'enrol') {
        var base = location.pathname.replace(/\/+$/, '');
        var creation = await postJson(base + '/options');
        var registration = await w.startRegistration({ optionsJSON: creation });
        done = await postJson(base + '/finish', registration);
      } else {
        var request = await postJson('/console/sign-in/options');
        var assertion = await w.startAuthentication({ optionsJSON: request });
        done = await postJson('/console/sign-in/finish', assertion);
      }
      say(status, 'Done; opening the console…');
      location.assign(done.location || '/console');
    } catch (err) {
      say(status, 'Failed: ' + errorText(err));
      button.disabled = false;
    }
  });

  // Step-up: a form with data-step-up gets a passkey assertion over exactly what it
  // describes (its own fields), then posts with it in the hidden field "assertion".
  document.addEventListener('submit', async function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute('data-step-up')) return;
    event.preventDefault();
    var status = form.querySelector('.step-up-status');
    if (!status) {
      status = document.createElement('p');
      status.className = 'step-up-status';
      status.setAttribute('role', 'status');
      form.appendChild(status);
    }
    var buttons = form.querySelectorAll('button');
    buttons.forEach(function (b) { b.disabled = true; });
    try {
      var w = webauthn();
      var fields = new URLSearchParams(new FormData(form));
      fields.delete('assertion');
      say(status, 'Confirm with your passkey…');
      var options = await post(form.getAttribute('data-step-up'), fields, 'application/x-www-form-urlencoded');
      var assertion = await w.startAuthentication({ optionsJSON: options });
      form.elements.namedItem('assertion').value = JSON.stringify(assertion);
      say(status, 'Confirmed; sending…');
      form.submit();
    } catch (err) {
      say(status, 'Not sent: ' + errorText(err));
      buttons.forEach(function (b) { b.disabled = false; });
    }
  });

  // Live pending list: on each change, fetch the list's fragment and swap it in
  // (not while keyboard focus is inside it: then after focus leaves).
  var live = document.querySelector('[data-live]');
  if (live && window.EventSource) {
    var liveStatus = document.getElementById('live-status');
    var stale = false;
    var loading = false;
    var reload = async function () {
      var current = document.querySelector('[data-live]');
      if (!current) return;
      if (current.contains(document.activeElement) && document.activeElement !== document.body) {
        stale = true;
        return;
      }
      if (loading) {
        stale = true;
        return;
      }
      loading = true;
      stale = false;
      try {
        var res = await fetch(current.getAttribute('data-live'), { headers: { accept: 'text/html', 'x-console-live': '1' }, credentials: 'same-origin' });
        if (res.status === 401) {
          say(liveStatus, 'Your session has ended: reload the page to sign in again.');
          source.close();
          return;
        }
        if (!res.ok) throw new Error('HTTP ' + res.status);
        var doc = new DOMParser().parseFromString(await res.text(), 'text/html');
        var fresh = doc.querySelector('[data-live]');
        if (fresh) current.replaceWith(document.importNode(fresh, true));
        say(liveStatus, 'Updated at ' + new Date().toLocaleTimeString() + '.');
      } catch (err) {
        say(liveStatus, 'Could not update the list (' + errorText(err) + '); reload the page.');
      } finally {
        loading = false;
        if (stale) setTimeout(reload, 200);
      }
    };
    document.addEventListener('focusout', function () {
      if (stale) setTimeout(reload, 0);
    });
    var source = new EventSource('/console/events');
    source.addEventListener('change', reload);
    source.addEventListener('error', function () {
      if (source.readyState === EventSource.CLOSED) say(liveStatus, 'Live updates stopped: reload the page.');
    });
  }
})();
