import Foundation
import KVCommon
import NIOCore
import NIOSSL

/// Mutual TLS for the cluster links (`security.tls`): the swift-nio-ssl contexts built once from this host's
/// certificate, key and the cluster's CA, and the handlers each new connection puts first in its pipeline.
///
/// Both ends verify: a server accepts only a client whose certificate chains to the CA, and a client accepts only
/// a server whose certificate chains to the CA and names the host it dialled (DNS name or IP address in its
/// subjectAltName). TLS 1.3 only: every process of a cluster runs this code, so nothing older needs to connect.
/// The cluster-key handshake still runs inside, and says which role the peer has.
public struct LinkTLS: Sendable {
    private let server: NIOSSLContext
    private let client: NIOSSLContext

    /// Reads the files of `config.security.tls`; nil when the section is absent. A file that is missing or not
    /// what it should be is a configuration error at the section. `keyFile`: where the private key is read
    /// instead (a systemd unit copies the root-owned key for its dynamic user, `--tls-key-file`).
    public static func load(_ config: ClusterConfig, keyFile handedOver: String? = nil) throws -> LinkTLS? {
        guard let files = config.security.linkTLS else { return nil }
        func failure(_ what: String, _ file: String, _ error: Error) -> KVError {
            let source = what == "key_file" && handedOver != nil
                ? "\(files.keyFile), read as \(file) (--tls-key-file)" : file
            return .config(file: config.path, line: files.mark.line, column: files.mark.column,
                           message: "security.tls.\(what) \(source): \(error); docs/OPERATIONS.md (Link TLS) shows how "
                               + "to make them")
        }
        for (what, file) in [("cert_file", files.certFile), ("key_file", handedOver ?? files.keyFile),
                             ("ca_file", files.caFile)] where access(file, R_OK) != 0 {
            throw failure(what, file, Unreadable(reason: String(cString: strerror(errno))))
        }
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(files.certFile)
            guard !chain.isEmpty else { throw NoCertificate() }
        } catch { throw failure("cert_file", files.certFile, error) }
        let keyPath = handedOver ?? files.keyFile
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        } catch { throw failure("key_file", keyPath, error) }
        let authorities: [NIOSSLCertificate]
        do {
            authorities = try NIOSSLCertificate.fromPEMFile(files.caFile)
            guard !authorities.isEmpty else { throw NoCertificate() }
        } catch { throw failure("ca_file", files.caFile, error) }

        var serverConfiguration = TLSConfiguration.makeServerConfigurationWithMTLS(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key),
            trustRoots: .certificates(authorities))
        serverConfiguration.minimumTLSVersion = .tlsv13
        var clientConfiguration = TLSConfiguration.makeClientConfiguration()
        clientConfiguration.minimumTLSVersion = .tlsv13
        clientConfiguration.certificateVerification = .fullVerification
        clientConfiguration.trustRoots = .certificates(authorities)
        clientConfiguration.certificateChain = chain.map { .certificate($0) }
        clientConfiguration.privateKey = .privateKey(key)
        do {
            return LinkTLS(server: try NIOSSLContext(configuration: serverConfiguration),
                           client: try NIOSSLContext(configuration: clientConfiguration))
        } catch {
            throw failure("cert_file", files.certFile, error)  // a key that does not match the certificate
        }
    }

    /// The first handler of an accepted connection.
    public func serverHandler() -> NIOSSLServerHandler { NIOSSLServerHandler(context: server) }

    /// The first handler of a connection to `host`: a name is sent as SNI and checked against the server's
    /// certificate; an IP address is checked against the certificate's IP entries.
    public func clientHandler(host: String) throws -> NIOSSLClientHandler {
        try NIOSSLClientHandler(context: client, serverHostname: Self.isIPAddress(host) ? nil : host)
    }

    /// What an operator should read for a TLS failure on a link to `peer` (nil: `error` is not a TLS error).
    public static func describe(_ error: Error, peer: String) -> String? {
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return "TLS: the certificate of \(peer) does not name the address dialled (its subjectAltName)"
        }
        guard let tls = error as? NIOSSLError else { return nil }
        if case .handshakeFailed(let inner) = tls, "\(inner)".contains("CERTIFICATE_VERIFY_FAILED") {
            return "TLS: the certificate of \(peer) is not signed by security.tls.ca_file"
        }
        return "TLS with \(peer) failed: \(tls)"
    }

    private struct Unreadable: Error, CustomStringConvertible {
        var reason: String
        var description: String { "cannot read it (\(reason))" }
    }

    private struct NoCertificate: Error, CustomStringConvertible {
        var description: String { "no PEM certificate in the file" }
    }

    private static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}
