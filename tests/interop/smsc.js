#!/usr/bin/env node
// A small SMSC on node-smpp (the npm package `smpp`), an SMPP implementation we
// did not write, for gateway/tests/smpp_interop.rs.
//
// It listens on 127.0.0.1 (port 0 unless given as the first argument) and prints
// one JSON object per line on stdout:
//   {"port":N}                                   first, once listening
//   {"event":"bind", ...}                        each bind_transceiver
//   {"event":"submit_sm", ...}                   each submit_sm, as node-smpp decoded it
//   {"event":"deliver_sm_resp", ...}             each answer to a receipt we sent
// It accepts bind_transceiver as goniec/secret, answers submit_sm with unique ids
// and, when registered_delivery asks for one, sends a DELIVRD receipt shortly
// after (standard text plus the receipted_message_id and message_state TLVs).
// It exits when its stdin closes, so it never outlives the test that spawned it.
'use strict';

const crypto = require('crypto');
const smpp = require('smpp');

const SYSTEM_ID = 'goniec';
const PASSWORD = 'secret';
const RECEIPT_DELAY_MS = 50;

function emit(obj) {
	process.stdout.write(JSON.stringify(obj) + '\n');
}

// YYMMDDhhmm, as in the receipt text of SMPP 3.4 Appendix B.
function receiptDate(d) {
	const two = (n) => String(n).padStart(2, '0');
	return two(d.getUTCFullYear() % 100) + two(d.getUTCMonth() + 1) + two(d.getUTCDate()) +
		two(d.getUTCHours()) + two(d.getUTCMinutes());
}

// node-smpp decodes short_message into {message, udh?}: `udh` is a list of
// information elements, each a Buffer [IEI, length, data...].
function concatInfo(udh) {
	for (const ie of udh || []) {
		if (ie[0] === 0x00 && ie[1] === 3) {
			return {iei: 0x00, ref: ie[2], total: ie[3], seq: ie[4]};
		}
		if (ie[0] === 0x08 && ie[1] === 4) {
			return {iei: 0x08, ref: ie.readUInt16BE(2), total: ie[4], seq: ie[5]};
		}
	}
	return null;
}

function text(sm) {
	if (sm && typeof sm.message === 'string') {
		return sm.message;
	}
	// Codings node-smpp does not decode (binary) arrive as a Buffer.
	return sm && sm.message ? sm.message.toString('hex') : '';
}

function sendReceipt(session, submit, id, submittedAt) {
	const sent = text(submit.short_message);
	const now = new Date();
	const receipt = 'id:' + id + ' sub:001 dlvrd:001 submit date:' + receiptDate(submittedAt) +
		' done date:' + receiptDate(now) + ' stat:DELIVRD err:000 text:' +
		// Only characters that read the same in ASCII and GSM 03.38 (data_coding 0).
		sent.slice(0, 20).replace(/[^A-Za-z0-9 .,:;!?()-]/g, '?');
	session.deliver_sm({
		source_addr_ton: submit.dest_addr_ton,
		source_addr_npi: submit.dest_addr_npi,
		source_addr: submit.destination_addr,
		dest_addr_ton: submit.source_addr_ton,
		dest_addr_npi: submit.source_addr_npi,
		destination_addr: submit.source_addr,
		esm_class: smpp.ESM_CLASS.MC_DELIVERY_RECEIPT,
		data_coding: 0,
		// A Buffer goes out as is; a string would be re-encoded by node-smpp.
		short_message: Buffer.from(receipt, 'ascii'),
		receipted_message_id: id,
		message_state: smpp.MESSAGE_STATE.DELIVERED,
	}, (resp) => {
		emit({event: 'deliver_sm_resp', id, command_status: resp.command_status});
	});
}

const server = smpp.createServer((session) => {
	let bound = false;
	session.on('error', (e) => process.stderr.write('smsc.js: session error: ' + e.message + '\n'));

	session.on('bind_transceiver', (pdu) => {
		const ok = pdu.system_id === SYSTEM_ID && pdu.password === PASSWORD;
		emit({event: 'bind', system_id: pdu.system_id, interface_version: pdu.interface_version, ok});
		if (!ok) {
			session.send(pdu.response({command_status: smpp.ESME_RBINDFAIL}));
			session.close();
			return;
		}
		bound = true;
		session.send(pdu.response({system_id: 'node-smpp'}));
	});
	for (const other of ['bind_transmitter', 'bind_receiver']) {
		session.on(other, (pdu) => {
			session.send(pdu.response({command_status: smpp.ESME_RBINDFAIL}));
			session.close();
		});
	}

	session.on('submit_sm', (pdu) => {
		if (!bound) {
			session.send(pdu.response({command_status: smpp.ESME_RINVBNDSTS}));
			return;
		}
		const id = crypto.randomUUID();
		const sm = pdu.short_message || {};
		emit({
			event: 'submit_sm',
			id,
			source_addr: pdu.source_addr,
			source_addr_ton: pdu.source_addr_ton,
			destination_addr: pdu.destination_addr,
			dest_addr_ton: pdu.dest_addr_ton,
			esm_class: pdu.esm_class,
			data_coding: pdu.data_coding,
			registered_delivery: pdu.registered_delivery,
			text: text(sm),
			udh: concatInfo(sm.udh),
			sar: pdu.sar_msg_ref_num === undefined ? null : {
				ref: pdu.sar_msg_ref_num, total: pdu.sar_total_segments, seq: pdu.sar_segment_seqnum,
			},
			payload: pdu.message_payload ? text(pdu.message_payload) : null,
		});
		const submittedAt = new Date();
		session.send(pdu.response({message_id: id}));
		if ((pdu.registered_delivery & 0x03) !== 0) {
			setTimeout(() => sendReceipt(session, pdu, id, submittedAt), RECEIPT_DELAY_MS);
		}
	});

	session.on('enquire_link', (pdu) => session.send(pdu.response()));
	session.on('unbind', (pdu) => {
		session.send(pdu.response());
		session.close();
	});
});

server.on('error', (e) => {
	process.stderr.write('smsc.js: ' + e.message + '\n');
	process.exit(1);
});

server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
	emit({port: server.address().port});
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
